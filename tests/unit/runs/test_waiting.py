"""Why a run is not done yet: one sentence from what dispatch recorded, the line, or the
step's state; the same reason said once while it lasts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sparkjobs.dispatch.places import StepPlace
from sparkjobs.runs.waiting import Waiting, run_waiting, step_waiting
from sparkjobs.store.models import Attempt, AttemptStatus, Run, RunKind, Status, Step, Trigger
from tests.support.sim import sim_config

QUEUED_AT = datetime(2026, 3, 2, 7, 0, 0, tzinfo=UTC)
SINCE = datetime(2026, 3, 2, 7, 0, 5, tzinfo=UTC)
HEALTH = "health: gemma (http://127.0.0.1:8002) is down for 42 s: connection refused"


def a_run(*steps: tuple[Status, str | None], status: Status = Status.QUEUED) -> Run:
    run = Run(id=uuid.uuid4(), job="briefing", kind=RunKind.PIPELINE, trigger=Trigger.SUBMIT,
              status=status, created_at=QUEUED_AT, params={})  # fmt: skip
    run.steps = [
        Step(
            id=uuid.uuid4(),
            run_id=run.id,
            index=index,
            name="chat",
            node="n1",
            service="gemma",
            status=state,
            queued_at=QUEUED_AT,
            waiting_for=waiting,
            waiting_since=SINCE if waiting else None,
            attempts=[],
        )
        for index, (state, waiting) in enumerate(steps)
    ]
    return run


def test_what_dispatch_recorded_is_the_reason_with_its_start() -> None:
    run = a_run((Status.QUEUED, HEALTH))
    assert step_waiting(run, run.steps[0]) == Waiting(0, HEALTH, SINCE)


def test_a_place_in_line_comes_before_what_was_recorded() -> None:
    run = a_run((Status.QUEUED, "lease: waiting for gemma (4th in line)"))
    place = StepPlace("gemma", 1, length=3, units=1)
    assert step_waiting(run, run.steps[0], place) == Waiting(0, "2nd in line for gemma", SINCE)


def test_a_queued_step_with_nothing_recorded_waits_for_its_nodes_worker() -> None:
    run = a_run((Status.QUEUED, None))
    waiting = step_waiting(run, run.steps[0], config=sim_config())
    assert waiting is not None
    assert waiting.text == (
        "queued for gemma on n1, at most 32 at once; it starts when the worker of n1 takes it"
    )
    assert (waiting.since, waiting.recorded, waiting.untaken) == (QUEUED_AT, False, ("gemma", "n1"))


def test_a_step_behind_an_unfinished_one_waits_for_it_and_the_run_for_the_first() -> None:
    run = a_run((Status.QUEUED, HEALTH), (Status.QUEUED, None))
    later = step_waiting(run, run.steps[1])
    assert later is not None
    assert later.text == "waits for an earlier step (chat on gemma), which is queued"
    assert run_waiting(run) == Waiting(0, HEALTH, SINCE)


def test_a_step_whose_attempt_failed_waits_for_its_retry() -> None:
    run = a_run((Status.QUEUED, None))
    run.steps[0].attempts = [Attempt(number=1, status=AttemptStatus.FAILED, error="503 busy",
                                     started_at=QUEUED_AT, finished_at=SINCE)]  # fmt: skip
    waiting = step_waiting(run, run.steps[0])
    assert waiting == Waiting(0, "will retry after attempt 1 failed: 503 busy", SINCE, False)


@pytest.mark.parametrize("status", [Status.RUNNING, Status.SUCCEEDED, Status.FAILED])
def test_a_step_being_done_or_done_waits_for_nothing(status: Status) -> None:
    run = a_run((status, None), status=status)
    assert step_waiting(run, run.steps[0]) is None
    assert run_waiting(run) is None


def test_a_reason_keeps_its_gist_while_only_its_seconds_and_estimates_change() -> None:
    first = Waiting(0, HEALTH)
    later = Waiting(0, HEALTH.replace("42 s", "61 s"))
    assert first.gist == later.gist
    assert first.gist != Waiting(0, HEALTH.replace("connection refused", "GET /health")).gist
    line = "2nd in line for orpheus, expected to start in about 40 s"
    assert Waiting(0, line).gist == Waiting(0, line.replace("40 s", "3 min")).gist
    assert Waiting(0, line).gist != Waiting(0, line.replace("2nd", "1st")).gist
