"""Running Flower, the live task monitor, on the project's Celery app, until stopped.

It never exits because the broker is down: it logs and retries (the app is built
with role="daemon").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sparkjobs.broker.app import create_app
from sparkjobs.broker.events import Watching
from sparkjobs.config import is_loopback

if TYPE_CHECKING:
    from sparkjobs.config import Config


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
