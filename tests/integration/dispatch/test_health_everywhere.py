"""One truth about health, and the line shown: the run page, the alerts, the metrics and
`doctor` read the readings a real worker's health monitor publishes in Redis, so a serial
server that keeps its probe waiting while it holds its lease is busy on all of them; and
`show` and the run page give a waiting step's place in line and its expected start,
read from the real lines (units joined with `Leases.try_acquire(..., join=True)`)."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import key
from sparkjobs.config import Config
from sparkjobs.dispatch.leases import Leases
from sparkjobs.dispatch.monitor import HealthMonitor
from sparkjobs.dispatch.status import read_statuses
from sparkjobs.doctor import checks
from sparkjobs.doctor.observe import observe_service
from sparkjobs.observe.alerts import Watcher
from sparkjobs.observe.collect import StateCollector
from sparkjobs.store.attempts import finish_step
from sparkjobs.store.engine import shared_sessions
from sparkjobs.store.models import Attempt, AttemptStatus, RunKind, Status, Trigger
from sparkjobs.store.runs import add_step, create_run
from sparkjobs.web.app import create_app as create_web
from tests.support.cluster import Cluster
from tests.support.mute import MuteOrpheus, serve_orpheus_from

pytestmark = pytest.mark.redis
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


@pytest.fixture
def muted(cluster: Cluster) -> Iterator[Config]:
    """The cluster's config, its Orpheus a front-end that keeps every probe waiting."""
    orpheus = MuteOrpheus()
    serve_orpheus_from(cluster.path, orpheus)
    yield cluster.config
    orpheus.close()


def leases_of(config: Config) -> Leases:
    return Leases(create_app(config).redis, functools.partial(key, config), ttl_s=300.0)


def unit(task: str = "sparkjobs.step", tail: str = "0") -> str:
    return f"{task}:{uuid.uuid4()}:{tail}"


def gauges(config: Config) -> dict[tuple[str, str], float]:
    found = {}
    for metric in StateCollector(config, "spark2").collect():
        for sample in metric.samples:
            if "service" in sample.labels:
                found[(sample.name, sample.labels["service"])] = sample.value
    return found


def everywhere(config: Config, service: str) -> dict[str, Any]:
    """What each surface says of `service` now."""
    app = create_app(config)
    with TestClient(create_web(config, sessions=shared_sessions(config.database))) as web:
        api = {h["service"]: h for h in web.get("/api/health").json()}[service]
        page = web.get("/health").text
    facts = observe_service(config, app, service)
    verdict = checks.service(service, config.services[service], facts.state, facts.detail,
                             published=facts.published)  # fmt: skip
    watcher = Watcher(config, shared_sessions(config.database), "http://phone.example:8800")
    watcher.check_once()
    return {
        "status": {s.service: s for s in read_statuses(config)}[service].state,
        "api": api["state"],
        "page": f'<tr data-service="{service}" data-state="{api["state"]}">' in page,
        "doctor": (facts.state, facts.published, verdict.status.value),
        "alerted": service in watcher.down,
        "up_gauge": gauges(config).get(("sparkjobs_service_up", service)),
        "busy_gauge": gauges(config).get(("sparkjobs_service_busy", service)),
        "line": api["line"],
    }


def test_a_serial_server_that_holds_its_lease_and_keeps_its_probe_waiting_is_busy_everywhere(
    muted: Config,
) -> None:
    config = muted
    monitor = HealthMonitor(config, "spark2", create_app(config).redis)
    assert everywhere(config, "orpheus")["status"] == "unknown"  # no worker published yet

    monitor.probe_once()  # nothing holds its lease: a probe that waits is no answer
    idle = everywhere(config, "orpheus")
    assert (idle["status"], idle["api"], idle["page"]) == ("down", "down", True)
    assert idle["doctor"][:2] == ("down", True)
    assert idle["alerted"]
    assert idle["up_gauge"] == 0.0

    leases = leases_of(config)
    lease, _ = leases.try_acquire("orpheus", 1)
    assert lease is not None
    for _ in range(2):
        _, waits = leases.try_acquire("orpheus", 1, unit=unit(), join=True)
        assert waits.place is not None
    monitor.probe_once()
    busy = everywhere(config, "orpheus")
    assert (busy["status"], busy["api"], busy["page"]) == ("busy", "busy", True)
    assert busy["doctor"] == ("busy", True, "ok")
    assert not busy["alerted"]
    assert (busy["up_gauge"], busy["busy_gauge"]) == (1.0, 1.0)
    assert busy["line"] == 2
    assert gauges(config)[("sparkjobs_line_length", "orpheus")] == 2.0
    leases.release(lease)


def _queued_speak(session: Any, *, status: Status = Status.QUEUED) -> tuple[uuid.UUID, Any]:
    run, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT,
                        status=status)  # fmt: skip
    step = add_step(session, run.id, 0, service="orpheus", node="spark2", name="speak")
    return run.id, step


@pytest.fixture
def lined(cluster: Cluster) -> dict[str, uuid.UUID]:
    """A finished long speech whose pieces took 4, 6 and 5 s; a queued speech whose step
    waits 2nd in Orpheus' line with no wait in SQL; and a running long speech with 3 of
    10 pieces done, the other 7 in line behind it."""
    config = cluster.config
    sessions = shared_sessions(config.database)
    with sessions.begin() as session:
        _, done = _queued_speak(session)
        done.pieces_total = 3
        session.add(Attempt(step_id=done.id, number=1, task_id="split", worker="spark2@h",
                            status=AttemptStatus.SUCCEEDED, started_at=T0,
                            finished_at=T0 + timedelta(seconds=0.1)))  # fmt: skip
        for number, seconds in enumerate((4, 6, 5)):
            session.add(Attempt(
                step_id=done.id, number=number + 2, task_id=f"p{number}", worker="spark2@h",
                status=AttemptStatus.SUCCEEDED, piece=number, started_at=T0,
                finished_at=T0 + timedelta(seconds=seconds),
            ))  # fmt: skip
        finish_step(session, done.id, status=Status.SUCCEEDED, now=T0 + timedelta(seconds=16))
        queued, _ = _queued_speak(session)
        running, long_step = _queued_speak(session, status=Status.RUNNING)
        long_step.status = Status.RUNNING
        long_step.pieces_total, long_step.pieces_done = 10, 3
    leases = leases_of(config)
    assert leases.try_acquire("orpheus", 1)[0] is not None  # a long call in progress
    for waiting in [unit(), f"sparkjobs.step:{queued}:0",
                    *(f"sparkjobs.speak_piece:{running}:0:{p}" for p in range(3, 10))]:  # fmt: skip
        _, attempt = leases.try_acquire("orpheus", 1, unit=waiting, join=True)
        assert attempt.place is not None
    return {"queued": queued, "running": running}


def test_show_gives_a_waiting_steps_place_in_line_and_its_expected_start(
    cluster: Cluster, lined: dict[str, uuid.UUID]
) -> None:
    shown = cluster.sparkjobs("show", str(lined["queued"]), "--json")
    assert shown.returncode == 0, shown.stderr
    (step,) = json.loads(shown.stdout)["steps"]
    assert step["line"] == {
        "service": "orpheus", "place": 2, "ahead": 1, "length": 9, "units": 1,
        "expected_start_s": 10.0,  # the median call (5 s), for the unit ahead and itself
        "text": "2nd in line for orpheus, expected to start in about 10 s",
    }  # fmt: skip
    # It joined the line before any task ran: nothing recorded, its place is the reason.
    assert (step["waiting_for"], step["waiting_since"]) == (step["line"]["text"], None)
    text = cluster.sparkjobs("show", str(lined["running"]))
    assert text.returncode == 0, text.stderr
    assert (
        "waiting: pieces 3/10, next piece 3rd in line for orpheus, expected to start in "
        "about 15 s" in text.stdout
    )


def test_the_run_page_and_api_give_the_same_place_in_line(
    cluster: Cluster, lined: dict[str, uuid.UUID]
) -> None:
    config = cluster.config
    with TestClient(create_web(config, sessions=shared_sessions(config.database))) as web:
        page = web.get(f"/runs/{lined['running']}").text
        api = web.get(f"/api/runs/{lined['queued']}").json()
        health = {h["service"]: h for h in web.get("/api/health").json()}
    assert "pieces 3/10, next piece 3rd in line for orpheus, expected to start in about 15 s" in (
        page
    )
    assert api["steps"][0]["line"]["text"] == (
        "2nd in line for orpheus, expected to start in about 10 s"
    )
    assert health["orpheus"]["line"] == 9
