"""sparkjobs: the job layer in front of your own GPU model servers.

The public API is what `__all__` lists; everything else may change. Names that
pull in Celery or pydantic are imported on first use, so that the command line
starts fast and a job file imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sparkjobs.errors import (
    BadInput,
    ConfigError,
    ModelServerError,
    PermanentError,
    RetryableError,
    SparkjobsError,
    Unreachable,
)
from sparkjobs.jobs.define import Job, chat, clone, cron, custom, every, job, speak

if TYPE_CHECKING:
    from sparkjobs.broker.app import create_app
    from sparkjobs.config import Config, load_config

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "Config",
    "ConfigError",
    "Job",
    "ModelServerError",
    "PermanentError",
    "RetryableError",
    "SparkjobsError",
    "Unreachable",
    "__version__",
    "chat",
    "clone",
    "create_app",
    "cron",
    "custom",
    "every",
    "job",
    "load_config",
    "speak",
]

_LAZY = {
    "Config": "sparkjobs.config",
    "load_config": "sparkjobs.config",
    "create_app": "sparkjobs.broker.app",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sparkjobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
