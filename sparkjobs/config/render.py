"""The resolved config as plain data with every secret masked, for people and logs."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import SecretStr

MASK = "***"
SECRET_QUERY_KEYS = frozenset({"password", "token", "secret", "key", "auth"})


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by '***'.

    Also a password given as a query parameter (`?password=`, as redis-py reads it),
    and whatever precedes an '@' of a string that does not parse as a URL.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. a bad port or bracket: not a URL, so hide what may be one
        parts, password = None, None
    if parts is None or (password is None and "@" in url and not parts.netloc):
        scheme, sep, rest = url.rpartition("://")
        _, at, host = rest.rpartition("@")
        return f"{scheme}{sep}{MASK}{at}{host}" if at else url
    masked = url
    if password is not None:
        masked = masked.replace(f":{password}@", f":{MASK}@", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*"
            )
            masked = masked.replace(parts.query, query, 1)
    return masked


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class Dumpable(Protocol):
    """What `masked_dump` reads of a config (the config model is one; this module is
    below it, so that the model can offer `masked()`)."""

    @property
    def broker(self) -> str: ...

    @property
    def database(self) -> str: ...

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]: ...


def masked_dump(config: Dumpable) -> dict[str, Any]:
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
