"""A running two-node cluster for job tests: simulators on its ports, a worker per node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, start_workers
from tests.support.sim import RunningSims, simulating


@pytest.fixture
def cluster_sims(cluster: Cluster) -> Iterator[RunningSims]:
    """Every service of the cluster simulated on its configured port."""
    # Retries of failed pieces must not wait long in a test: cap the backoff.
    with cluster.path.open("a") as config:
        config.write("\n[tasks]\nmax_retry_delay_s = 1\n")
    with simulating(cluster.config) as sims:
        yield sims


@pytest.fixture
def workers(cluster: Cluster, cluster_sims: RunningSims) -> Cluster:
    """The cluster with a worker consuming each node's queue."""
    start_workers(cluster)
    return cluster
