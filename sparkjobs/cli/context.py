"""The config for this command line: found from --config once, loaded on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkjobs.config import Config


@dataclass
class _State:
    path: Path | None = None
    config: Config | None = None


_state = _State()


def set_config_path(path: Path | None) -> None:
    """Remember the global --config option; the file is read only when a command needs it."""
    _state.path, _state.config = path, None


def get_config() -> Config:
    """The validated config (raises ConfigError, exit 2, when it is not)."""
    if _state.config is None:
        from sparkjobs.config import load_config

        _state.config = load_config(_state.path)
    return _state.config


def get_config_path() -> Path | None:
    """The config file named by --config or $SPARKJOBS_CONFIG (None: the built-in default)."""
    return _state.path
