"""`sparkjobs doctor` against a real cluster: workers, simulators, the leg's Redis and SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.jobs.conftest import cluster_sims, workers
from tests.support.cluster import Cluster, clean_env, cluster_toml, wait_for_workers
from tests.support.services import free_port
from tests.support.sim import RunningSims

__all__ = ["cluster_sims", "workers"]

pytestmark = pytest.mark.redis

FINDING_KEYS = {"name", "status", "detail", "fix"}


def doctor(cluster: Cluster, *args: str) -> tuple[int, dict[str, object]]:
    done = cluster.sparkjobs("doctor", "--node", "spark1", "--json", *args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def statuses(report: dict[str, object]) -> dict[str, str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {f["name"]: f["status"] for f in findings}


def test_a_healthy_cluster_exits_0_with_every_worker_and_service_ok(workers: Cluster) -> None:
    code, report = doctor(workers)
    assert code == 0, report
    seen = statuses(report)
    for name in ("broker", "database", "schema", "worker spark1", "worker spark2"):
        assert seen[name] == "ok", report
    for service in ("gemma", "qwen", "orpheus", "clone"):
        assert seen[f"service {service}"] == "ok", report
    assert seen["clock spark1@" + _host()] == "ok"


def test_the_json_report_has_a_pinned_shape(workers: Cluster) -> None:
    _, report = doctor(workers)
    assert set(report) == {"node", "ok", "exit_code", "findings"}
    assert report["node"] == "spark1"
    assert report["ok"] is True
    assert report["exit_code"] == 0
    findings = report["findings"]
    assert isinstance(findings, list)
    assert findings[0]["name"] == "identity"
    for finding in findings:
        assert set(finding) == FINDING_KEYS
        assert finding["status"] in {"ok", "warn", "down"}


def test_a_node_without_a_worker_is_down_and_exits_1(
    cluster: Cluster, cluster_sims: RunningSims
) -> None:
    cluster.start("worker", "--node", "spark1")
    wait_for_workers(cluster, ["spark1"])
    code, report = doctor(cluster)
    assert code == 1
    seen = statuses(report)
    assert seen["worker spark1"] == "ok"
    assert seen["worker spark2"] == "down"
    spark2 = next(f for f in report["findings"] if f["name"] == "worker spark2")  # type: ignore[union-attr]
    assert "sparkjobs worker --node spark2" in spark2["fix"]


def test_a_service_nobody_serves_is_down(cluster: Cluster) -> None:
    code, report = doctor(cluster)
    assert code == 1
    assert statuses(report)["service gemma"] == "down"


def test_an_unreachable_broker_exits_3_without_showing_its_password(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    port = free_port()  # nothing listens there
    path.write_text(
        cluster_toml(
            broker_url=f"redis://:sekrit@127.0.0.1:{port}/0",
            database_url=f"sqlite:///{tmp_path / 'sj.db'}",
            data_dir=str(tmp_path / "data"),
        )
    )
    cluster = Cluster(path=path, env=clean_env(SPARKJOBS_CONFIG=str(path)))
    code, report = doctor(cluster)
    assert code == 3
    seen = statuses(report)
    assert seen["broker"] == "down"
    assert seen["worker spark1"] == "down"
    assert "sekrit" not in json.dumps(report)


def test_an_unknown_node_is_bad_input(cluster: Cluster) -> None:
    done = cluster.sparkjobs("doctor", "--node", "spark9")
    assert done.returncode == 2
    assert "unknown node 'spark9'" in done.stderr


def _host() -> str:
    import socket

    return socket.gethostname()
