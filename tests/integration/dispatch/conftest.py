"""A cluster whose config the dispatch tests tune before any worker starts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.store.models import Run
from sparkjobs.store.queries import get_run
from tests.support.cluster import Cluster

HANG_GUARD_S = 120.0


def tune(cluster: Cluster, *, replace: dict[str, str] | None = None, append: str = "") -> None:
    """Edit the cluster's config file: replace text, then append TOML sections."""
    text = cluster.path.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    cluster.path.write_text(text + "\n" + append)


def poll(what: str, check: Callable[[], bool], timeout_s: float = HANG_GUARD_S) -> None:
    """Wait until `check()` holds; fail naming `what` after the hang guard."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s (hang guard)"
        time.sleep(0.1)


def load_run(cluster: Cluster, run_id: uuid.UUID) -> Run:
    with store_sessions(cluster.config) as sessions, sessions() as session:
        return get_run(session, run_id)
