"""Making the job files importable: custom steps are named by dotted path
(`schedules.briefing:summarize`), found on the parent of `schedules_dir`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkjobs.config import Config


def ensure_importable(config: Config) -> None:
    """Put the parent of `schedules_dir` first on sys.path (workers call this too)."""
    parent = str(config.schedules_dir.resolve().parent)
    if sys.path[:1] != [parent]:
        if parent in sys.path:
            sys.path.remove(parent)
        sys.path.insert(0, parent)
