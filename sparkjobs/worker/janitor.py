"""A node's housekeeping: removing artifact files that no SQL row references any more.

`sparkjobs db prune` deletes old runs and the artifact rows nobody needs; the files
themselves live on each node, so each node's worker removes its own, once an hour.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.store.artifacts import artifact_root
from sparkjobs.store.prune import remove_unreferenced_files

if TYPE_CHECKING:
    from sparkjobs.config import Config

log = logging.getLogger(__name__)

INTERVAL_S = 3600.0


class Janitor:
    """Runs `remove_unreferenced_files` for one node every `interval_s`, in a thread."""

    def __init__(self, config: Config, node: str, *, interval_s: float = INTERVAL_S) -> None:
        self._config, self._node, self._interval_s = config, node, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"janitor-{node}", daemon=True)

    def start(self) -> Janitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sweep(self) -> None:
        """One pass; a database that does not answer is tried again next time."""
        root = artifact_root(self._config.data_dir, self._node)
        try:
            with store_sessions(self._config) as sessions, sessions() as session:
                freed = remove_unreferenced_files(session, node=self._node, root=root)
        except DBAPIError as exc:
            log.warning("janitor of %s: the database did not answer: %s", self._node, exc)
            return
        if freed.files:
            log.info(
                "janitor of %s: removed %d unreferenced files, %d bytes",
                self._node, freed.files, freed.size_bytes,
            )  # fmt: skip

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sweep()
