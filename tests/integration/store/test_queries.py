"""Reading the store: filtered run lists, one run in full, and per-service figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.errors import UnknownRun
from sparkjobs.store.artifacts import link_artifact, store_artifact
from sparkjobs.store.attempts import StepTimings, finish_step, record_result, start_attempt
from sparkjobs.store.models import RunKind, Status, Trigger
from sparkjobs.store.queries import get_run, list_runs, service_figures
from sparkjobs.store.runs import add_step, create_run, finish_run

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _step_run(
    session: Session,
    *,
    service: str,
    started: datetime,
    latency_s: float,
    status: Status = Status.SUCCEEDED,
    timings: StepTimings | None = None,
) -> uuid.UUID:
    run, _ = create_run(
        session, job=service, kind=RunKind.CHAT, trigger=Trigger.SUBMIT, now=started
    )
    step = add_step(session, run.id, 0, service=service, node="spark1", now=started)
    attempt = start_attempt(session, step.id, task_id="t", worker="w", now=started)
    assert attempt is not None
    finish_step(
        session,
        step.id,
        status=status,
        attempt_id=attempt.id,
        timings=timings,
        error=None if status == Status.SUCCEEDED else "boom",
        now=started + timedelta(seconds=latency_s),
    )
    finish_run(session, run.id, status=status, now=started + timedelta(seconds=latency_s))
    return run.id


def test_runs_are_listed_newest_first_and_filtered(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for hour, (job, trigger) in enumerate(
            [("a", Trigger.SCHEDULE), ("b", Trigger.SUBMIT), ("a", Trigger.MANUAL)]
        ):
            run, _ = create_run(
                session,
                job=job,
                kind=RunKind.CHAT,
                trigger=trigger,
                now=T0 + timedelta(hours=hour),
            )
            if job == "b":
                finish_run(session, run.id, status=Status.FAILED, error="x")
    with sessions() as session:
        assert [run.job for run in list_runs(session)] == ["a", "b", "a"]
        assert [run.trigger for run in list_runs(session, job="a")] == [
            Trigger.MANUAL,
            Trigger.SCHEDULE,
        ]
        assert [run.job for run in list_runs(session, status=Status.FAILED)] == ["b"]
        assert len(list_runs(session, status=[Status.FAILED, Status.QUEUED])) == 3
        assert [run.job for run in list_runs(session, trigger=Trigger.SUBMIT)] == ["b"]
        since = list_runs(session, since=T0 + timedelta(minutes=30))
        assert [run.created_at for run in since] == [
            T0 + timedelta(hours=2),
            T0 + timedelta(hours=1),
        ]
        assert len(list_runs(session, limit=1)) == 1


def test_a_run_comes_with_its_steps_attempts_results_and_artifacts(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        run, _ = create_run(
            session,
            job="speak",
            kind=RunKind.SPEAK,
            trigger=Trigger.API,
            params={"text": "Hello", "voice": "tara"},
        )
        step = add_step(session, run.id, 0, service="orpheus", node="spark2", name="speak")
        attempt = start_attempt(session, step.id, task_id="celery-1", worker="w@spark2")
        assert attempt is not None
        record_result(session, step.id, data={"voice": "tara"})
        artifact = store_artifact(
            session, tmp_path / "art", b"RIFF....", node="spark2", media_type="audio/x-raw"
        )
        link_artifact(session, step.id, artifact.sha256)
        finish_step(session, step.id, status=Status.SUCCEEDED, attempt_id=attempt.id)
    with sessions() as session:
        found = get_run(session, str(run.id))
    # Loaded eagerly: readable with the session closed.
    assert found.params == {"text": "Hello", "voice": "tara"}
    assert found.created_at.tzinfo is not None
    (only,) = found.steps
    assert (only.name, only.status, only.node) == ("speak", Status.SUCCEEDED, "spark2")
    assert [(a.task_id, a.worker, a.number) for a in only.attempts] == [("celery-1", "w@spark2", 1)]
    assert only.attempts[0].finished_at is not None
    assert only.result is not None
    assert only.result.data == {"voice": "tara"}
    (link,) = only.artifacts
    assert link.artifact.size_bytes == 8
    assert [location.node for location in link.artifact.locations] == ["spark2"]


def test_a_run_is_read_in_two_queries_whatever_it_holds(
    engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Run, steps, results and artifacts with locations; then attempts: two SELECTs
    for a run of two steps (waiters read every finished run this way), and a step
    with several attempts and artifacts comes back with each of them once."""
    with sessions.begin() as session:
        run, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.API)
        for index in range(2):
            step = add_step(session, run.id, index, service="orpheus", node="spark2")
            for number in range(3 - 2 * index):  # step 0: three attempts; step 1: one
                attempt = start_attempt(session, step.id, task_id=f"t{index}{number}", worker="w")
                assert attempt is not None
            record_result(session, step.id, text=f"out {index}")
            for made in range(2 - index):  # step 0: two artifacts; step 1: one
                artifact = store_artifact(
                    session, tmp_path / "art", b"RIFF" + bytes([index, made]), node="spark2",
                    media_type="audio/x-raw",
                )  # fmt: skip
                link_artifact(session, step.id, artifact.sha256)
            finish_step(session, step.id, status=Status.SUCCEEDED, attempt_id=attempt.id)
    selects: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions() as session:
            found = get_run(session, run.id)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(selects) == 2, selects
    assert [s.result.text for s in found.steps if s.result] == ["out 0", "out 1"]
    assert [[a.number for a in s.attempts] for s in found.steps] == [[1, 2, 3], [1]]
    assert [len(s.artifacts) for s in found.steps] == [2, 1]
    assert [len(link.artifact.locations) for s in found.steps for link in s.artifacts] == [1, 1, 1]


def test_an_unknown_run_id_is_bad_input_that_names_it(sessions: sessionmaker[Session]) -> None:
    missing = uuid.uuid4()
    with sessions() as session:
        with pytest.raises(UnknownRun, match=str(missing)):
            get_run(session, missing)
        with pytest.raises(UnknownRun, match="not a run id"):
            get_run(session, "nonsense")


def test_service_figures_count_failures_and_percentiles_over_the_window(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        for number in range(1, 11):  # latencies 1..10 s, ttft 10..100 ms
            _step_run(
                session,
                service="gemma",
                started=T0 + timedelta(minutes=number),
                latency_s=number,
                timings=StepTimings(ttft_ms=10.0 * number, tokens_out=100, tokens_per_s=50.0),
            )
        _step_run(session, service="gemma", started=T0, latency_s=60, status=Status.FAILED)
        _step_run(
            session,
            service="orpheus",
            started=T0,
            latency_s=2,
            timings=StepTimings(ttft_ms=200.0, audio_s=4.0, rtf=0.5),
        )
        # Outside the window: before it.
        _step_run(session, service="gemma", started=T0 - timedelta(days=1), latency_s=1000)
    with sessions() as session:
        gemma, orpheus = service_figures(session, since=T0)
        only_orpheus = service_figures(session, since=T0, service="orpheus")
    assert (gemma.service, gemma.count, gemma.failures) == ("gemma", 11, 1)
    assert gemma.latency_p50_ms == pytest.approx(5500.0)
    assert gemma.latency_p95_ms == pytest.approx(9550.0)
    assert gemma.ttft_p50_ms == pytest.approx(55.0)
    assert gemma.tokens_per_s_p50 == pytest.approx(50.0)
    assert gemma.rtf_p50 is None
    assert (orpheus.count, orpheus.failures, orpheus.rtf_p50) == (1, 0, 0.5)
    assert orpheus.ttft_p50_ms == pytest.approx(200.0)
    assert only_orpheus == [orpheus]
