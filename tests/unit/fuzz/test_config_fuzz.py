"""The config loader never crashes: any file, any value at any key, any environment
override loads, or is refused with a ConfigError that says where and how to fix it."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from sparkjobs.cli.config import _drop_none
from sparkjobs.config import Config, load_config
from sparkjobs.errors import ConfigError
from tests.unit.fuzz.support import FUZZ, TOML_VALUES, unreachable_config

# Where values go: every key of the model (and a few that do not exist).
KEY_PATHS = [
    ("data_dir",),
    ("broker_url",),
    ("broker_key_prefix",),
    ("database_url",),
    ("schedules_dir",),
    ("nodes",),
    ("nodes", "spark1"),
    ("nodes", "spark1", "bond_address"),
    ("nodes", "spark1", "lan_address"),
    ("nodes", "spark2", "artifacts_port"),
    ("nodes", "spark2", "metrics_port"),
    ("nodes", "Bad Name"),
    ("services",),
    ("services", "gemma"),
    ("services", "gemma", "node"),
    ("services", "gemma", "kind"),
    ("services", "gemma", "url"),
    ("services", "gemma", "models"),
    ("services", "orpheus", "voices"),
    ("services", "gemma", "max_in_flight"),
    ("services", "gemma", "default"),
    ("services", "qwen", "backend_url"),
    ("services", "gemma", "timeouts"),
    ("services", "gemma", "timeouts", "total_s"),
    ("services", "spark1"),
    ("tasks", "time_limit_s"),
    ("tasks", "visibility_timeout_s"),
    ("worker", "concurrency"),
    ("worker", "shutdown_grace_s"),
    ("dispatch", "lease_ttl_s"),
    ("dispatch", "max_kv_cache_usage"),
    ("flower", "address"),
    ("flower", "port"),
    ("flower", "node"),
    ("flower", "basic_auth"),
    ("web", "address"),
    ("web", "token"),
    ("web", "basic_auth"),
    ("web", "public_url"),
    ("web", "flower_url"),
    ("artifacts", "port"),
    ("artifacts", "token"),
    ("metrics", "port"),
    ("alerts", "webhook_url"),
    ("alerts", "format"),
    ("sim", "gemma"),
    ("sim", "gemma", "time_scale"),
    ("sim", "nothing"),
    ("unknown",),
]


def place(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(document.get(part), dict):
            document[part] = {}
        document = document[part]
    document[path[-1]] = value


def loads_or_explains(path: Path) -> Config | None:
    """Load `path`: a Config, or None after checking the ConfigError is a clear one."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.strip(), "an empty error message"
        assert "Traceback" not in message
        return None
    # What `sparkjobs config check` prints must render too, in both forms.
    data = config.masked()
    json.dumps(data)
    tomli_w.dumps(_drop_none(data))
    return config


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(KEY_PATHS), TOML_VALUES), max_size=4))
def test_any_value_at_any_key_loads_or_is_a_config_error(
    tmp_path: Path, changes: list[tuple[tuple[str, ...], Any]]
) -> None:
    path = unreachable_config(tmp_path)
    document = tomllib.loads(path.read_text())
    for key_path, value in changes:
        place(document, key_path, value)
    path.write_text(tomli_w.dumps(document))
    loads_or_explains(path)


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_file_content_loads_or_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "any.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    loads_or_explains(path)


ENV_KEYS = ["_".join(("SPARKJOBS", "__".join(p).upper())) for p in KEY_PATHS]


@FUZZ
@given(
    name=st.sampled_from(ENV_KEYS)
    | st.text(alphabet="ABCDEFGHIJ_", max_size=12).map(lambda s: "SPARKJOBS_" + s),
    value=st.text(max_size=40).filter(lambda s: "\x00" not in s),
)
def test_any_environment_override_loads_or_is_a_config_error(
    tmp_path: Path, name: str, value: str
) -> None:
    path = unreachable_config(tmp_path)
    if name == "SPARKJOBS_CONFIG":
        return
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        loads_or_explains(path)
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


SECRET_PATHS = [
    ("web", "token"),
    ("web", "basic_auth"),
    ("flower", "basic_auth"),
    ("artifacts", "token"),
    ("alerts", "webhook_url"),
    ("broker_url",),
    ("database_url",),
]
MARK = "Zq8secret"


def secret_shapes(secret: str) -> st.SearchStrategy[Any]:
    """The secret as a right or wrong value: a URL's password, a list, a table...

    (A URL key set to the bare secret is not among them: nothing can tell it from a
    host name, and the error must show a mistyped host.)
    """
    return st.sampled_from(
        [
            f"user:{secret}@somewhere",
            f"redis://127.0.0.1:1/0?password={secret}",
            f"redis://:{secret}@127.0.0.1:99999/0",
            f"redis://:{secret}@127.0.0.1:1/0",
            f"postgresql+psycopg://u:{secret}@127.0.0.1/db",
            f"ftp://u:{secret}@h/x",
            f"http://h/?token={secret}",
            [secret],
            [f"admin:{secret}"],
            [f"admin:{secret}", 5],
            {"x": secret},
        ]
    )


@FUZZ
@given(
    where=st.sampled_from(SECRET_PATHS),
    value=st.text(alphabet="abcdefXYZ0189", min_size=4, max_size=12).flatmap(
        lambda tail: secret_shapes(MARK + tail)
    ),
)
def test_a_secret_never_appears_in_the_error_or_the_resolved_config(
    tmp_path: Path, where: tuple[str, ...], value: Any
) -> None:
    path = unreachable_config(tmp_path)
    document = tomllib.loads(path.read_text())
    place(document, where, value)
    if where[-1] in ("token", "basic_auth", "webhook_url"):
        place(document, where, MARK + "plain")  # a bare secret: right for these keys
        path.write_text(tomli_w.dumps(document))
        shown = json.dumps(load_config(path).masked()) if where[-1] != "basic_auth" else ""
        assert MARK not in shown
        place(document, where, value)
    path.write_text(tomli_w.dumps(document))
    try:
        shown = json.dumps(load_config(path).masked())
    except ConfigError as exc:
        shown = str(exc)
    assert MARK not in shown, shown
