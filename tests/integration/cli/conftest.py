"""The CLI against a real broker, store, workers and simulators (the jobs tests' cluster)."""

from __future__ import annotations

from tests.integration.jobs.conftest import cluster_sims, workers

__all__ = ["cluster_sims", "workers"]
