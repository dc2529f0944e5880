"""The reconciler queues lost work again, and leaves work that has a message alone."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import queue_keys
from sparkjobs.broker.publish import STEP_TASK
from sparkjobs.broker.units import Unit, decode_message
from sparkjobs.errors import Unreachable
from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.models import Attempt, AttemptStatus, Result, Status, Step
from sparkjobs.worker import reconciler as reconciler_module
from sparkjobs.worker.reconciler import PASS_SPACING, Reconciler, next_pass_due
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker
from tests.support.sim import RunningSims

pytestmark = pytest.mark.redis

HANG_GUARD_S = 120.0
GREETING = job("greeting", steps=[chat("Say hello to the night shift.", max_tokens=40)])


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reconciler(fast_reconciler: Cluster) -> Iterator[tuple[Reconciler, Clock]]:
    clock = Clock()
    made = Reconciler(fast_reconciler.config, clock=clock)
    yield made, clock
    made.client.close()


def queued_units(cluster: Cluster, broker: Broker) -> list[Unit | None]:
    names = queue_keys(cluster.config.broker_key_prefix, "spark1")
    return [decode_message(raw) for name in names for raw in broker.client.lrange(name, 0, -1)]


def test_a_run_whose_publish_failed_is_published_once_it_stayed_unclaimed(
    fast_reconciler: Cluster, broker: Broker, reconciler: tuple[Reconciler, Clock]
) -> None:
    config = fast_reconciler.config
    nowhere = config.model_copy(update={"broker_url": SecretStr("redis://127.0.0.1:1/0")})
    with pytest.raises(Unreachable, match="recorded as queued"):
        submit_job(config, GREETING, trigger="submit", app=create_app(nowhere))
    assert queued_units(fast_reconciler, broker) == []
    with store_sessions(config) as sessions, sessions() as session:
        run_id = session.scalars(select(Step.run_id)).one()
    made, clock = reconciler

    first = made.reconcile()
    assert (first.pending, first.missing, first.published) == (1, 1, [])  # not yet: in transit?

    clock.now += config.reconciler.unclaimed_s
    second = made.reconcile()
    unit = Unit(STEP_TASK, run_id, 0)
    assert second.published == [unit]
    assert queued_units(fast_reconciler, broker) == [unit]

    clock.now += 10 * config.reconciler.unclaimed_s
    third = made.reconcile()
    assert (third.missing, third.published) == (0, [])  # its message waits in the queue
    assert queued_units(fast_reconciler, broker) == [unit]


def test_a_reconciler_taking_over_goes_on_counting_how_long_a_unit_was_missing(
    fast_reconciler: Cluster, broker: Broker, reconciler: tuple[Reconciler, Clock]
) -> None:
    config = fast_reconciler.config
    nowhere = config.model_copy(update={"broker_url": SecretStr("redis://127.0.0.1:1/0")})
    with pytest.raises(Unreachable):
        submit_job(config, GREETING, trigger="submit", app=create_app(nowhere))
    first, clock = reconciler
    assert first.reconcile().published == []  # then this reconciler is killed

    clock.now += config.reconciler.unclaimed_s
    successor = Reconciler(config, clock=clock)
    try:
        assert len(successor.reconcile().published) == 1
    finally:
        successor.client.close()
    assert len(queued_units(fast_reconciler, broker)) == 1


def test_a_message_waiting_in_a_queue_is_never_published_twice(
    fast_reconciler: Cluster, broker: Broker, reconciler: tuple[Reconciler, Clock]
) -> None:
    config = fast_reconciler.config
    submitted = submit_job(config, GREETING, trigger="submit")  # no worker consumes it
    made, clock = reconciler
    for _ in range(3):
        done = made.reconcile()
        assert (done.pending, done.missing, done.published, done.restored) == (1, 0, [], [])
        clock.now += 10 * config.reconciler.unclaimed_s
    assert queued_units(fast_reconciler, broker) == [Unit(STEP_TASK, submitted.run_id, 0)]


def test_a_queued_message_is_decoded_once_however_many_passes_see_it(
    fast_reconciler: Cluster, reconciler: tuple[Reconciler, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[bytes] = []

    def counted(raw: bytes) -> Unit | None:
        decoded.append(raw)
        return decode_message(raw)

    monkeypatch.setattr(reconciler_module, "decode_message", counted)
    config = fast_reconciler.config
    first = submit_job(config, GREETING, trigger="submit")  # no worker consumes them
    made, _ = reconciler
    assert made.reconcile().missing == 0
    second = submit_job(config, GREETING, trigger="submit")
    assert (made.reconcile().pending, made.reconcile().missing) == (2, 0)
    assert len(decoded) == 2  # each message once, over three passes
    assert {decode_message(raw) for raw in decoded} == {
        Unit(STEP_TASK, first.run_id, 0), Unit(STEP_TASK, second.run_id, 0)
    }  # fmt: skip


def test_passes_are_spaced_by_how_long_the_last_one_took() -> None:
    assert next_pass_due(100.0, 100.01) == pytest.approx(100.0 + 0.01 * PASS_SPACING)
    # A backlog that makes a pass take 2 s: the next starts 2 * PASS_SPACING s after.
    assert next_pass_due(100.0, 102.0) == pytest.approx(100.0 + 2.0 * PASS_SPACING)
    assert PASS_SPACING >= 10  # passes take at most a tenth of the worker's time


def running_attempt(cluster: Cluster, run_id: uuid.UUID) -> Attempt:
    deadline = time.monotonic() + HANG_GUARD_S
    with store_sessions(cluster.config) as sessions:
        while time.monotonic() < deadline:
            with sessions() as session:
                attempt = session.scalars(
                    select(Attempt)
                    .join(Step, Step.id == Attempt.step_id)
                    .where(Step.run_id == run_id, Attempt.status == AttemptStatus.RUNNING)
                ).first()
            if attempt is not None:
                return attempt
            time.sleep(0.05)
    pytest.fail(f"no attempt of run {run_id} started in {HANG_GUARD_S} s (hang guard)")


def test_the_step_of_a_killed_worker_runs_again_on_its_restart_with_a_new_attempt(
    fast_reconciler: Cluster, workers: Cluster, cluster_sims: RunningSims
) -> None:
    cluster_sims.set_faults("gemma", slow_factor=2000.0)  # the call outlives the kill
    submitted = submit_job(workers.config, GREETING, trigger="submit")
    first = running_attempt(workers, submitted.run_id)
    spark1 = workers.processes[0]
    spark1.send_signal(signal.SIGKILL)
    spark1.wait(timeout=30)
    workers.processes.remove(spark1)
    cluster_sims.set_faults("gemma", slow_factor=1.0)
    workers.start("worker", "--node", "spark1")
    wait_for_workers(workers, ["spark1"])

    run = wait_for_run(workers.config, submitted.run_id, timeout_s=HANG_GUARD_S)
    assert run.status == Status.SUCCEEDED, run.error or f"still {run.status} (hang guard)"
    [step] = run.steps
    assert [a.status for a in step.attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    lost = step.attempts[0]
    assert lost.id == first.id
    assert lost.error is not None
    assert lost.error.startswith(f"lost: worker {first.worker} ")
    with store_sessions(workers.config) as sessions, sessions() as session:
        results = session.scalars(select(Result).where(Result.step_id == step.id)).all()
    assert len(results) == 1
