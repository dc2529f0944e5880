"""Two real `sparkjobs beat` processes on real Redis and SQL: one fire per slot, failover.

Slots are one second apart. Assertions are on the runs in SQL (which slots exist,
how often), never on how long anything took; deadlines only guard against hangs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select

from sparkjobs.store.engine import make_engine, session_factory
from sparkjobs.store.models import JobRecord, Run, Status, Trigger
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

TICKER = """\
from sparkjobs import chat, every, job

job(
    "ticker",
    schedule=every(seconds=1),
    overlap="queue",  # no worker runs here: every run stays queued
    steps=[chat("Say the time: {slot:%H:%M:%S}")],
)
"""
BROKEN = """\
from sparkjobs import chat, cron, job

job("broken", schedule=cron("0 7 * * *"), steps=[chat("hi", service="gemm")])
"""
HANG_GUARD_S = 90


def slots_of(database_url: str, job: str) -> list[Run]:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            query = select(Run).where(Run.job == job).order_by(Run.scheduled_for)
            return list(session.scalars(query))
    finally:
        engine.dispose()


def wait_for_slots(database_url: str, job: str, count: int) -> list[Run]:
    deadline = time.monotonic() + HANG_GUARD_S
    while ((runs := slots_of(database_url, job)) and len(runs) < count) or not runs:
        assert time.monotonic() < deadline, f"only {len(runs)} of {count} slots in SQL"
        time.sleep(0.2)
    return runs


def active_beat(logs: list[Path]) -> int:
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        found = [i for i, log in enumerate(logs) if "active scheduler now" in log.read_text()]
        if found:
            assert len(found) == 1, "both beats claim the lock"
            return found[0]
        assert time.monotonic() < deadline, "no beat became active"
        time.sleep(0.2)


def start_beats(cluster: Cluster, tmp_path: Path, files: dict[str, str]) -> list[Path]:
    schedules = tmp_path / "schedules"
    schedules.mkdir()
    for name, text in files.items():
        (schedules / name).write_text(text)
    cluster.env["SPARKJOBS_SCHEDULES_DIR"] = str(schedules)
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    for log in logs:
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "sparkjobs", "beat"],
                env=cluster.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cluster.processes.append(process)  # stopped by pid at teardown
    return logs


def test_two_beats_fire_every_slot_once_and_the_standby_takes_over_after_sigkill(
    cluster: Cluster, database_url: str, tmp_path: Path
) -> None:
    logs = start_beats(cluster, tmp_path, {"ticker.py": TICKER, "broken.py": BROKEN})
    first = active_beat(logs)
    before_kill = len(wait_for_slots(database_url, "ticker", 4))
    cluster.processes[first].send_signal(signal.SIGKILL)
    cluster.processes[first].wait(timeout=10)
    runs = wait_for_slots(database_url, "ticker", before_kill + 8)
    assert "active scheduler now" in logs[1 - first].read_text()

    slots: list[datetime] = [run.scheduled_for for run in runs if run.scheduled_for]
    assert len(slots) == len(runs) == len(set(slots)), "a slot has more than one run"
    gaps = {later - earlier for earlier, later in pairwise(slots)}
    assert gaps == {timedelta(seconds=1)}, "a slot was missed"
    assert {run.trigger for run in runs} == {Trigger.SCHEDULE}
    assert {run.status for run in runs} == {Status.QUEUED}


def test_a_broken_job_file_is_reported_with_its_line_and_the_others_still_fire(
    cluster: Cluster, database_url: str, tmp_path: Path
) -> None:
    logs = start_beats(cluster, tmp_path, {"ticker.py": TICKER, "broken.py": BROKEN})
    active = active_beat(logs)
    wait_for_slots(database_url, "ticker", 2)
    log = logs[active].read_text()
    assert "broken.py:3" in log
    assert "unknown service 'gemm'" in log
    assert "did you mean 'gemma'" in log
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            names = set(session.scalars(select(JobRecord.name)))
    finally:
        engine.dispose()
    assert names == {"ticker"}
    assert slots_of(database_url, "broken") == []
