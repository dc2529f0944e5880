"""Running beat and Flower (the worker has `sparkjobs.worker.process`).

Each blocks until it is told to stop. None of them exits because the broker is
down: they log and retry (the app is built with role="daemon"). A broker that
refuses the password is another matter: the commands check it first (exit 3).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from sparkjobs.broker.app import create_app
from sparkjobs.broker.events import Watching
from sparkjobs.config import is_loopback
from sparkjobs.errors import Unreachable

if TYPE_CHECKING:
    from sparkjobs.config import Config

log = logging.getLogger(__name__)


def refuse_a_wrong_broker_password(config: Config) -> None:
    """Raise Unreachable (exit 3) at once when the broker refuses the password.

    Retrying cannot fix a wrong password, so a daemon says so and stops instead of
    logging the refusal forever; a broker that is down is waited for as usual.
    """
    import redis

    from sparkjobs.broker.client import check_broker

    try:
        check_broker(config)
    except Unreachable as exc:
        if isinstance(exc.__cause__, redis.AuthenticationError):
            raise
        log.info("the broker does not answer yet: %s", exc)


def run_beat(config: Config, *, loglevel: str = "INFO") -> None:
    """Run the scheduler until stopped: the jobs of `schedules_dir`, active or standby.

    Any number of beats may run; the lock in Redis lets one fire (see
    `sparkjobs.scheduling.beat`), so a second one on another node is a hot standby.
    """
    app = create_app(config, role="daemon")
    app.Beat(scheduler="sparkjobs.scheduling.beat:SparkjobsScheduler", loglevel=loglevel).run()


def run_flower(config: Config) -> None:
    """Run Flower on the project's app, bound as configured.

    Its REST API answers only with basic auth unless `[flower] open_api` opens it on
    loopback: an open API also lets any page in a local browser read it and post to it
    (Flower then allows every origin). Off loopback the config requires basic auth.
    """
    flower = config.flower
    argv = ["flower", f"--address={flower.address}", f"--port={flower.port}"]
    if flower.basic_auth:
        # Through the environment, not argv, so that `ps` never shows the password.
        entries = ",".join(secret.get_secret_value() for secret in flower.basic_auth)
        os.environ["FLOWER_BASIC_AUTH"] = entries
    if flower.open_api and is_loopback(flower.address):
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
    else:  # never inherited: Flower would open its API to any origin
        os.environ.pop("FLOWER_UNAUTHENTICATED_API", None)
    app = create_app(config, role="daemon")
    # Flower switches task events on itself, every 5 s from 5 s after its start: the
    # first tasks, and those of a worker started between two of its broadcasts, would
    # go unseen. This asks at once and leaves the key a starting worker reads.
    watching = Watching(app)
    watching.start()
    try:
        app.start(argv=argv)
    finally:
        watching.stop()
