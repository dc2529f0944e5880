"""What the store adds to `sparkjobs up`: migrating its own SQLite before workers start."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sparkjobs.up.component import Component, Stage

if TYPE_CHECKING:
    from sparkjobs.config import Config


def components(config: Config) -> list[Component]:
    """A one-shot `sparkjobs db upgrade` when the database is SQLite; nothing otherwise.

    PostgreSQL is shared by the whole cluster: `up` does not migrate it, the operator
    runs `sparkjobs db upgrade` once (workers refuse to start until then).
    """
    if not config.database.startswith("sqlite:"):
        return []
    return [
        Component(
            name="db upgrade",
            argv=(sys.executable, "-m", "sparkjobs", "db", "upgrade"),
            where=f"SQLite in {config.data_dir}",
            stage=Stage.PREPARE,
            # The child migrates exactly the file this `up` uses, however its config
            # reached `up` (a SQLite URL carries no secret).
            env={"SPARKJOBS_DATABASE_URL": config.database},
            oneshot=True,
        )
    ]
