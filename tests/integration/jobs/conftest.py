"""A running two-node cluster for job tests: simulators on its ports, a worker per node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sparkjobs.sim import SimHost
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.sim import TEST_TIME_SCALE, RunningSims


@pytest.fixture
def cluster_sims(cluster: Cluster) -> Iterator[RunningSims]:
    """Every service of the cluster simulated on its configured port."""
    # Retries of failed pieces must not wait long in a test: cap the backoff.
    with cluster.path.open("a") as config:
        config.write("\n[tasks]\nmax_retry_delay_s = 1\n")
    sims = RunningSims(SimHost(cluster.config, (), {"time_scale": TEST_TIME_SCALE}))
    sims.ready()
    yield sims
    sims.stop()


@pytest.fixture
def workers(cluster: Cluster, cluster_sims: RunningSims) -> Cluster:
    """The cluster with a worker consuming each node's queue."""
    for node in ("spark1", "spark2"):
        cluster.start("worker", "--node", node)
    wait_for_workers(cluster, ["spark1", "spark2"])
    return cluster
