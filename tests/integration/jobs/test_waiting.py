"""Waiting for a run: woken by the end's announcement, with a safety poll behind it."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.config import Config, load_config
from sparkjobs.jobs.define import job, speak
from sparkjobs.runs.control import cancel_run
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.engine import make_engine
from sparkjobs.store.models import Run, Status
from tests.integration.cli.support import ok
from tests.support.cluster import Cluster
from tests.support.services import free_port
from tests.support.sim import RunningSims

pytestmark = pytest.mark.redis

HANG_GUARD_S = 120.0
# Far beyond the hang guard: a waiter that returns was woken, it did not poll.
NEVER_S = 3600.0
SHORT = job("short", steps=[speak("Hello there, good morning.")])


class CountedReads:
    """A session factory for `wait_for_run` that counts the reads (sessions closed)."""

    def __init__(self, database_url: str) -> None:
        self.count = 0
        self.first = threading.Event()
        reads = self

        class CountedSession(Session):
            def close(self) -> None:
                super().close()
                reads.count += 1
                reads.first.set()

        self.engine = make_engine(database_url)
        self.sessions = sessionmaker(self.engine, class_=CountedSession, expire_on_commit=False)


class Waiter:
    """`wait_for_run` in a thread; `result()` joins it, failing after the hang guard."""

    def __init__(self, config: Config, run_id: object, **options: object) -> None:
        self.run: Run | None = None
        self.error: BaseException | None = None

        def wait() -> None:
            try:
                self.run = wait_for_run(config, run_id, timeout_s=None, **options)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the test's thread
                self.error = exc

        self.thread = threading.Thread(target=wait, daemon=True)
        self.thread.start()

    def result(self) -> Run:
        self.thread.join(HANG_GUARD_S)
        assert not self.thread.is_alive(), f"wait_for_run still waiting after {HANG_GUARD_S} s"
        if self.error is not None:
            raise self.error
        assert self.run is not None
        return self.run


def test_waiting_wakes_when_the_worker_announces_the_end(
    cluster: Cluster, cluster_sims: RunningSims
) -> None:
    run_id = submit_job(cluster.config, SHORT, trigger="submit").run_id
    reads = CountedReads(cluster.config.database)
    try:
        waiter = Waiter(cluster.config, run_id, safety_poll_s=NEVER_S, sessions=reads.sessions)
        assert reads.first.wait(HANG_GUARD_S)  # it has read the run queued: no worker yet
        cluster.start("worker", "--node", "spark2")
        run = waiter.result()
    finally:
        reads.engine.dispose()
    assert run.status == Status.SUCCEEDED, run.error
    assert reads.count == 2  # the first read, then one when the worker announced the end


def test_waiting_wakes_when_another_process_cancels_the_run(cluster: Cluster) -> None:
    run_id = submit_job(cluster.config, SHORT, trigger="submit").run_id  # no worker: queued
    reads = CountedReads(cluster.config.database)
    try:
        waiter = Waiter(cluster.config, run_id, safety_poll_s=NEVER_S, sessions=reads.sessions)
        assert reads.first.wait(HANG_GUARD_S)
        ok(cluster.sparkjobs("cancel", str(run_id)))
        run = waiter.result()
    finally:
        reads.engine.dispose()
    assert run.status == Status.CANCELLED
    assert reads.count == 2


def test_without_a_broker_waiting_and_cancelling_fall_back_to_sql(
    cluster: Cluster, tmp_path: Path
) -> None:
    run_id = submit_job(cluster.config, SHORT, trigger="submit").run_id
    # The same cluster, except that its broker does not answer: no announcement can
    # be sent or received, so only the safety poll can notice the end.
    dead = tmp_path / "dead-broker.toml"
    dead.write_text(
        re.sub(
            r"^broker_url = .*$",
            f'broker_url = "redis://127.0.0.1:{free_port()}/0"',
            cluster.path.read_text(),
            count=1,
            flags=re.MULTILINE,
        )
    )
    config = load_config(dead)
    reads = CountedReads(config.database)
    try:
        waiter = Waiter(config, run_id, safety_poll_s=0.05, sessions=reads.sessions)
        assert reads.first.wait(HANG_GUARD_S)
        cancelled = cancel_run(config, run_id)  # SQL first; its announcement is lost
        run = waiter.result()
    finally:
        reads.engine.dispose()
    assert cancelled.changed
    assert run.status == Status.CANCELLED
