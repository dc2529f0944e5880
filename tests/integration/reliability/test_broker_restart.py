"""Workers live through a restart of Redis, and the work they held finishes."""

from __future__ import annotations

import pytest
import redis
from kombu.exceptions import OperationalError

from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.models import Status
from tests.integration.reliability.conftest import OwnRedis
from tests.integration.reliability.test_reconciler import GREETING, HANG_GUARD_S, running_attempt
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker
from tests.support.sim import RunningSims

pytestmark = pytest.mark.redis


@pytest.fixture
def broker(own_broker: Broker) -> Broker:
    """This test kills Redis: never the shared one."""
    return own_broker


def test_workers_outlive_a_redis_restart_and_the_step_they_ran_finishes(
    own_redis: OwnRedis, fast_reconciler: Cluster, workers: Cluster, cluster_sims: RunningSims
) -> None:
    cluster_sims.set_faults("gemma", slow_factor=2000.0)  # the call spans the restart
    submitted = submit_job(workers.config, GREETING, trigger="submit")
    running_attempt(workers, submitted.run_id)
    own_redis.kill()
    cluster_sims.set_faults("gemma", slow_factor=1.0)
    own_redis.start()
    for _ in range(3):  # the first call may meet a connection of the killed server
        try:
            wait_for_workers(workers, ["spark1", "spark2"])
            break
        except (redis.ConnectionError, OperationalError):
            continue

    run = wait_for_run(workers.config, submitted.run_id, timeout_s=HANG_GUARD_S)
    assert run.status == Status.SUCCEEDED, run.error or f"still {run.status} (hang guard)"
    exited = [p.args for p in workers.processes if p.poll() is not None]
    assert exited == [], "a worker exited when Redis restarted"
