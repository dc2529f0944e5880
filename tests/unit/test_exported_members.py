"""The public API is exactly what `sparkjobs.__all__` lists, sorted and importable."""

from __future__ import annotations

import subprocess
import sys

import sparkjobs

EXPECTED = [
    "BadInput", "Config", "ConfigError", "Job", "ModelServerError", "PermanentError",
    "RetryableError", "SparkjobsError", "Unreachable", "__version__", "chat", "clone",
    "create_app", "cron", "custom", "every", "job", "load_config", "speak",
]  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert sparkjobs.__all__ == EXPECTED
    assert sparkjobs.__all__ == sorted(sparkjobs.__all__)


def test_every_exported_name_resolves() -> None:
    for name in sparkjobs.__all__:
        assert getattr(sparkjobs, name) is not None, name


def test_importing_the_package_does_not_import_celery() -> None:
    code = "import sys, sparkjobs; print('celery' in sys.modules, 'pydantic' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
