"""When a worker records an attempt's start: a custom step's start may be deferred to
its end (PostgreSQL), and must then leave the rows a start written at once leaves.

Whatever the store, a quick step's attempt, step and run share one start time; a step
that lasts is seen running, with its attempt, before it ends; a step that fails
records its failed attempt.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from sparkjobs.jobs.define import custom, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.store.engine import shared_sessions
from sparkjobs.store.models import Attempt, AttemptStatus, Status, Step
from tests.integration.jobs.test_runs import HANG_GUARD_S, finished
from tests.support.cluster import Cluster

pytestmark = pytest.mark.redis

STEPS = "tests.integration.jobs.custom_steps"


def test_a_quick_step_records_one_attempt_that_starts_the_step_and_the_run(
    workers: Cluster,
) -> None:
    quick = job("quick", steps=[custom(f"{STEPS}:quick", service="gemma")] * 2)
    run = finished(workers, submit_job(workers.config, quick, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    first, second = run.steps
    assert run.started_at == first.started_at
    for step in (first, second):
        (attempt,) = step.attempts
        assert (attempt.number, attempt.status, attempt.error) == (1, AttemptStatus.SUCCEEDED, None)
        assert attempt.worker.startswith("spark1@")
        assert step.result is not None
        assert step.result.text == "quick"
        assert attempt.task_id == step.result.task_id
        assert (attempt.started_at, attempt.finished_at) == (step.started_at, step.finished_at)
        assert step.latency_ms is not None
        assert step.latency_ms >= 0
    assert run.finished_at is not None
    assert second.finished_at is not None
    assert run.finished_at >= second.finished_at


def test_a_step_that_lasts_is_seen_running_with_its_attempt_before_it_ends(
    workers: Cluster, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    lasting = job("lasting", params={"go": str(go)},
                  steps=[custom(f"{STEPS}:wait_for_go", service="gemma")])  # fmt: skip
    run_id = submit_job(workers.config, lasting, trigger="submit").run_id
    running = _attempts_while_running(workers, run_id)
    go.touch()
    run = finished(workers, run_id)
    assert run.status == Status.SUCCEEDED, run.error
    (step,) = run.steps
    assert [(a.id, a.status) for a in step.attempts] == [(running[0][0], AttemptStatus.SUCCEEDED)]
    assert step.attempts[0].started_at == step.started_at == run.started_at


def test_a_step_that_fails_records_its_failed_attempt(workers: Cluster) -> None:
    broken = job("broken", steps=[custom(f"{STEPS}:broken", service="gemma")])
    run = finished(workers, submit_job(workers.config, broken, trigger="submit").run_id)
    assert run.status == Status.FAILED
    (step,) = run.steps
    (attempt,) = step.attempts
    assert attempt.status == AttemptStatus.FAILED
    assert attempt.error is not None
    assert "this step is broken" in attempt.error
    assert attempt.started_at == step.started_at == run.started_at
    assert attempt.finished_at == step.finished_at


def _attempts_while_running(
    cluster: Cluster, run_id: uuid.UUID
) -> list[tuple[uuid.UUID, AttemptStatus]]:
    """The step's attempts once the store shows it running (within the hang guard)."""
    deadline = time.monotonic() + HANG_GUARD_S
    sessions = shared_sessions(cluster.config.database)
    while time.monotonic() < deadline:
        with sessions() as session:
            step = session.scalars(select(Step).where(Step.run_id == run_id)).one()
            attempts = session.execute(
                select(Attempt.id, Attempt.status).where(Attempt.step_id == step.id)
            ).all()
            if step.status == Status.RUNNING:
                assert [status for _, status in attempts] == [AttemptStatus.RUNNING]
                return [(attempt_id, status) for attempt_id, status in attempts]
        time.sleep(0.05)
    raise AssertionError(f"the step was not seen running within {HANG_GUARD_S} s")
