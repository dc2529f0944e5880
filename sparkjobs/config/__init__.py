"""The cluster config: its shape (`model`), how it is found (`load`), and its rules."""

from sparkjobs.config.load import config_path, load_config
from sparkjobs.config.model import (
    LLM_KINDS,
    TTS_KINDS,
    Config,
    NodeConfig,
    ServiceConfig,
    is_loopback,
)

__all__ = [
    "LLM_KINDS",
    "TTS_KINDS",
    "Config",
    "NodeConfig",
    "ServiceConfig",
    "config_path",
    "is_loopback",
    "load_config",
]
