"""`sparkjobs jobs list | run | pause | resume` against a real store, broker and workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli.support import ok, run_count, with_jobs
from tests.support.cluster import Cluster

pytestmark = pytest.mark.redis


def listed(cluster: Cluster) -> dict[str, dict[str, object]]:
    rows = json.loads(ok(cluster.sparkjobs("jobs", "list", "--json")))
    assert isinstance(rows, list)  # lists are top-level JSON arrays
    return {row["name"]: row for row in rows}


def test_jobs_list_shows_every_job_of_the_schedules_folder(
    cluster: Cluster, tmp_path: Path
) -> None:
    jobs = listed(with_jobs(cluster, tmp_path))
    assert set(jobs) == {"greeting", "doomed"}
    assert jobs["greeting"]["paused"] is False


def test_pause_and_resume_are_recorded_and_shown(cluster: Cluster, tmp_path: Path) -> None:
    with_jobs(cluster, tmp_path)
    ok(cluster.sparkjobs("jobs", "pause", "greeting"))
    assert listed(cluster)["greeting"]["paused"] is True
    assert listed(cluster)["doomed"]["paused"] is False
    ok(cluster.sparkjobs("jobs", "resume", "greeting"))
    assert listed(cluster)["greeting"]["paused"] is False


def test_pausing_an_unknown_job_exits_2_naming_the_known_ones(
    cluster: Cluster, tmp_path: Path
) -> None:
    result = with_jobs(cluster, tmp_path).sparkjobs("jobs", "pause", "greting")
    assert result.returncode == 2
    assert "greting" in result.stderr
    assert "greeting" in result.stderr


def test_jobs_run_fires_now_and_waits_for_the_result(workers: Cluster, tmp_path: Path) -> None:
    cluster = with_jobs(workers, tmp_path)
    result = cluster.sparkjobs("jobs", "run", "greeting", "--param", "name=Grace", "--wait")
    assert result.returncode == 0, result.stderr
    assert run_count(cluster) == 1
    runs = json.loads(ok(cluster.sparkjobs("runs", "--json")))
    assert [(r["job"], r["trigger"], r["status"]) for r in runs] == [
        ("greeting", "manual", "succeeded")
    ]


def test_jobs_run_with_an_unknown_parameter_exits_2_and_writes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    result = with_jobs(cluster, tmp_path).sparkjobs("jobs", "run", "greeting", "--param", "x=1")
    assert result.returncode == 2
    assert "unknown parameter 'x'" in result.stderr
    assert run_count(cluster) == 0
