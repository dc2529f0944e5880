"""Finding, reading and validating the cluster config.

Where it comes from: `--config PATH`, else `$SPARKJOBS_CONFIG`, else the built-in
default (both nodes and all services on this machine). `SPARKJOBS_*` environment
variables override any key, `__` separating nested keys.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from sparkjobs.config.checks import Problem, check
from sparkjobs.config.model import Config
from sparkjobs.config.render import MASK, mask_url
from sparkjobs.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
ENV_PREFIX = "SPARKJOBS_"

# Keys whose values are secrets (or URLs that may carry one): errors never show them.
SECRET_KEYS = frozenset({"token", "basic_auth", "webhook_url", "broker_url", "database_url"})

# Fixes for pydantic's error types, by type; the message of the error says the rest.
_FIXES = {
    "url_parsing": "write a full URL such as http://10.0.0.1:8002",
    "url_scheme": "use an http:// or https:// URL",
    "ip_any_address": "write an IP address such as 10.0.0.2 (not a host name)",
    "ip_v4_address": "write an IP address such as 10.0.0.2",
    "literal_error": "use one of the values listed",
    "extra_forbidden": "remove it, or check its spelling against docs/configuration.md",
    "string_pattern_mismatch": "names are lowercase letters, digits, '-' and '_' (e.g. spark1)",
    "missing": "add it",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "greater_than_equal": "raise it",
    "less_than_equal": "lower it",
    "greater_than": "raise it",
}


def config_path(path: Path | str | None = None) -> Path | None:
    """The config file in force: the argument, else $SPARKJOBS_CONFIG, else None."""
    chosen = path or os.environ.get(f"{ENV_PREFIX}CONFIG") or None
    return Path(chosen).expanduser() if chosen else None


def load_config(path: Path | str | None = None) -> Config:
    """Read, validate and cross-check the config.

    Raises:
        ConfigError: naming the file (or environment variable), key, value and fix.
    """
    file = config_path(path) or DEFAULT_CONFIG
    label = str(file) if file != DEFAULT_CONFIG else "the built-in default config"
    data = _read_toml(file, label)
    data["source"] = label
    # A value of the wrong type is left as it is, for the model to refuse with its key.
    if file != DEFAULT_CONFIG and isinstance(data.get("schedules_dir"), str):
        data["schedules_dir"] = str(file.parent / Path(data["schedules_dir"]).expanduser())
    try:
        config = Config(**data)
    except ValidationError as exc:
        problems = [_problem_from(error) for error in exc.errors()]
        raise ConfigError(_explain(problems, file, label)) from exc
    except SettingsError as exc:
        raise ConfigError(_explain_environment(exc, label)) from exc
    problems = check(config)
    if problems:
        raise ConfigError(_explain(problems, file, label))
    return config


def _read_toml(file: Path, label: str) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {label} does not exist; fix the path given by --config or "
            f"{ENV_PREFIX}CONFIG, or copy sparkjobs.example.toml there"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib reports duplicate keys and tables here, with line and column.
        raise ConfigError(
            f"{label} is not valid TOML: {exc}. Fix: correct that line; each key and "
            "each [table] may appear only once"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {label}: {exc.strerror}") from exc


def _explain_environment(exc: SettingsError, label: str) -> str:
    """A table set from the environment whose value is not JSON: name the variables."""
    field = re.search(r'field "([^"]+)"', str(exc))
    stem = f"{ENV_PREFIX}{field.group(1).upper()}" if field else ENV_PREFIX
    names = sorted(name for name in os.environ if name.upper().startswith(stem))
    # Only names: the values may be secrets.
    return (
        f"invalid config ({label}): environment variable {', '.join(names) or stem} "
        f"cannot be read ({exc}). Fix: a whole table must be JSON, e.g. "
        f"{stem}='{{...}}'; or set one key with __ between the parts, e.g. "
        f"{ENV_PREFIX}NODES__SPARK1__BOND_ADDRESS=10.0.0.1"
    )


def _problem_from(error: Any) -> Problem:
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    kind = error["type"]
    fix = _FIXES.get(kind, "correct the value")
    if kind == "string_pattern_mismatch" and error["loc"][-1] == "[key]":
        return Problem(".".join(loc), loc[-1], "is not a valid name", fix)
    if kind == "extra_forbidden":
        return Problem(".".join(loc), error["input"], "is not a known key", fix)
    value = error.get("input")
    if SECRET_KEYS & set(loc):
        # A secret of the wrong shape is still a secret: name the key, never the value.
        value = mask_url(value) if isinstance(value, str) and "://" in value else MASK
    return Problem(".".join(loc), value, error["msg"], fix)


def _explain(problems: Iterable[Problem], file: Path, label: str) -> str:
    lines = [f"invalid config ({label}):"]
    text = file.read_text(encoding="utf-8", errors="replace") if file.exists() else ""
    for problem in problems:
        where = _env_name(problem.key) or _line_of(text, problem.key)
        value = "" if isinstance(problem.value, dict) else f" = {problem.value!r}"
        lines.append(f"  {where}{problem.key}{value}: {problem.message}. Fix: {problem.fix}.")
    return "\n".join(lines)


def _env_name(key: str) -> str:
    name = ENV_PREFIX + key.replace(".", "__").upper()
    return f"(from environment variable {name}) " if name in os.environ else ""


def _line_of(text: str, key: str) -> str:
    """'line N: ' for where KEY is set in TOML text, or '' when it cannot be found."""
    parts = key.split(".")
    table_pattern = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
    table: list[str] = []
    best = ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = table_pattern.match(line)
        if match:
            table = [p.strip().strip('"') for p in match.group(1).split(".")]
            if table == parts:
                best = f"line {number}: "
            continue
        name = line.split("=", 1)[0].strip().strip('"')
        if "=" in line and [*table, name] == parts:
            return f"line {number}: "
        if "=" in line and [*table, name] == parts[:-1] and not best:
            best = f"line {number}: "
    return best
