"""Running beat until it is told to stop.

It never exits because the broker is down: it logs and retries (the app is built
with role="daemon"). A broker that refuses the password is another matter: the
command checks it first (exit 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkjobs.broker.app import create_app

if TYPE_CHECKING:
    from sparkjobs.config import Config


def run_beat(config: Config, *, loglevel: str = "INFO") -> None:
    """Run the scheduler until stopped: the jobs of `schedules_dir`, active or standby.

    Any number of beats may run; the lock in Redis lets one fire (see
    `sparkjobs.scheduling.beat`), so a second one on another node is a hot standby.
    """
    app = create_app(config, role="daemon")
    app.Beat(scheduler="sparkjobs.scheduling.beat:SparkjobsScheduler", loglevel=loglevel).run()
