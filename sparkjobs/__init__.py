"""sparkjobs: the job layer in front of your own GPU model servers.

The public API is what `__all__` lists; everything else may change.
"""

from __future__ import annotations

from sparkjobs.app import create_app
from sparkjobs.config import Config, load_config
from sparkjobs.errors import (
    BadInput,
    ConfigError,
    ModelServerError,
    PermanentError,
    RetryableError,
    SparkjobsError,
    Unreachable,
)
from sparkjobs.jobs import Job, chat, clone, cron, custom, every, job, speak

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
