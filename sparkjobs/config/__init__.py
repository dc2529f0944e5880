"""The cluster config: its shape (`model`, made of `sections` of `values`), how it is
found (`load`), its rules (`checks`), and routing service -> node -> queue (`routing`)."""

from sparkjobs.config.load import config_path, load_config
from sparkjobs.config.model import Config
from sparkjobs.config.sections import NodeConfig, ServiceConfig
from sparkjobs.config.values import LLM_KINDS, TTS_KINDS, is_loopback

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
