"""The resolved config as plain data with every secret masked, for people and logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from sparkjobs.config.model import Config

MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by '***'."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def masked_dump(config: Config) -> dict[str, Any]:
    """Every key of the config, resolved defaults included, secrets masked.

    URLs that may carry a password (broker, database) keep their shape so that a
    person can still see where they point.
    """
    data = _plain(config.model_dump(mode="python"))
    data = {key: _jsonable(item) for key, item in data.items()}
    data["broker_url"] = mask_url(config.broker)
    data["database_url"] = mask_url(config.database)
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
