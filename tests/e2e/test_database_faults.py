"""The database stopped and restarted under a working cluster: nothing is lost.

The test runs a PostgreSQL server of its own (initdb and pg_ctl of the PostgreSQL
binaries, as the `postgres` user when run as root, on a free port and a temporary data
dir), stops it the hard way (`pg_ctl stop -m immediate`, a crash as far as the
clients see) while chat runs are queued and in flight, and starts it again. Workers
must retry through the outage and finish every run; `sparkjobs submit` must exit 3
and queue nothing while the database is down. Assertions are on SQL, the queue and
the exit code; deadlines only guard against hangs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sparkjobs.broker.client import queue_keys, redis_client
from sparkjobs.execution.failures import INTERRUPTED
from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import submit_job
from sparkjobs.sim import SimHost
from sparkjobs.store.engine import dispose_shared, make_engine, session_factory
from sparkjobs.store.models import Attempt, AttemptStatus, Run, Status, Step
from tests.support.cluster import Cluster, clean_env, cluster_toml, wait_for_workers
from tests.support.services import free_port, require
from tests.support.sim import TEST_TIME_SCALE, RunningSims

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.e2e]

HANG_GUARD_S = 90.0
RUNS = 10


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's newest."""
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
        if (Path(found) / "initdb").is_file():
            return Path(found)
    except (OSError, subprocess.CalledProcessError):
        pass
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return debian[-1].parent if debian else None


class PrivatePostgres:
    """A PostgreSQL server of this test's own; stop and start it at will."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.home = Path(tempfile.mkdtemp(prefix="sjpg-"))
        self.data = self.home / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: then the server runs as `postgres`.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.home, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bindir / tool), *args], user=self.user, check=True,
                       capture_output=True, timeout=HANG_GUARD_S)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-o", options,
                  "-l", str(self.home / "server.log"))  # fmt: skip

    def crash(self) -> None:
        """Stop at once, as a crash would: connections cut, recovery at the next start."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data))

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bindir()
    require("PostgreSQL binaries (initdb, pg_ctl)", "pg_config --bindir",
            None if bindir else FileNotFoundError("no initdb"))  # fmt: skip
    assert bindir is not None
    server = PrivatePostgres(bindir)
    try:
        server.start()
        yield server
    finally:
        dispose_shared(server.url)
        server.close()


@pytest.fixture
def db_cluster(
    request: pytest.FixtureRequest, postgres: PrivatePostgres, private_redis: str, tmp_path: Path
) -> Iterator[Cluster]:
    """A cluster on the test's own PostgreSQL, a worker on spark1, gemma simulated.

    Parametrized indirectly: TOML to append, and whether gemma is served (default yes).
    """
    from sparkjobs.store.schema import upgrade

    extra, serve = getattr(request, "param", ("", True))

    upgrade(postgres.url)
    prefix = f"sjdb-{uuid.uuid4().hex[:8]}:"
    path = tmp_path / "sparkjobs.toml"
    path.write_text(
        cluster_toml(broker_url=private_redis, broker_key_prefix=prefix, database_url=postgres.url,
                     data_dir=str(postgres.home))
        # Quick retries; no reconciler, so that every run finishes through its own retries.
        + "\n[reconciler]\nenabled = false\n"
        + (extra or "\n[tasks]\nmax_retry_delay_s = 1\n")
    )  # fmt: skip
    cluster = Cluster(path=path, env=clean_env(SPARKJOBS_CONFIG=str(path)))
    # Calls of about a second each: runs are still in flight when the database stops.
    sims = RunningSims(SimHost(cluster.config, ("gemma",),
                               {"time_scale": TEST_TIME_SCALE, "slow_factor": 200.0}))  # fmt: skip
    client = redis_client(cluster.config)
    try:
        if serve:
            sims.ready()
        else:
            sims.stop()
        cluster.start("worker", "--node", "spark1", log=tmp_path / "worker.log")
        wait_for_workers(cluster, ["spark1"])
        yield cluster
    finally:
        cluster.stop_all()
        sims.stop()
        for found in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(found)
        client.close()


def runs_of(url: str) -> list[Run]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(Run)))
    finally:
        engine.dispose()


def wait_until(what: str, check: object) -> None:
    assert callable(check)
    deadline = time.monotonic() + HANG_GUARD_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {HANG_GUARD_S} s (hang guard)"
        time.sleep(0.2)


def waiting_steps(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return len(session.scalars(select(Step).where(Step.waiting_for.is_not(None))).all())
    finally:
        engine.dispose()


def dropped(log: Path) -> list[str]:
    """The log lines of messages dropped past the outage deadline."""
    return [line for line in log.read_text().splitlines() if "leaving it for recovery" in line]


def test_runs_finish_through_a_database_restart_and_submit_exits_3_while_it_is_down(
    db_cluster: Cluster, postgres: PrivatePostgres, tmp_path: Path
) -> None:
    config = db_cluster.config
    asking = job("asking", steps=[chat("Tell me about {params.n}.", max_tokens=40)],
                 params={"n": 0})  # fmt: skip
    submitted = {
        submit_job(config, asking, params={"n": n}, trigger="submit").run_id for n in range(RUNS)
    }
    wait_until("a run is running", lambda: any(
        run.status == Status.RUNNING for run in runs_of(postgres.url)))  # fmt: skip

    postgres.crash()
    down = db_cluster.sparkjobs("submit", "speak", "Nobody can record this.", timeout_s=60)
    assert down.returncode == 3, down.stdout + down.stderr
    assert f"127.0.0.1:{postgres.port}" in down.stderr
    client = redis_client(config)
    try:
        queued = sum(int(client.llen(k)) for k in queue_keys(config.broker_key_prefix, "spark2"))
    finally:
        client.close()
    assert queued == 0, "submit queued a run the database never recorded"
    worker_log = tmp_path / "worker.log"

    # Several retries in a row meet the outage before the database is back.
    def retried() -> bool:
        return worker_log.read_text().count("the database is unreachable") >= 8

    wait_until("the worker met the outage", retried)
    postgres.start()

    def finished() -> bool:
        return all(run.status.terminal for run in runs_of(postgres.url))

    wait_until("every run finished", finished)
    runs = runs_of(postgres.url)
    assert {run.id for run in runs} == submitted, "a run is missing, or submit recorded one"
    failed = {str(run.id): run.error for run in runs if run.status != Status.SUCCEEDED}
    assert not failed
    engine = make_engine(postgres.url)
    try:
        with session_factory(engine)() as session:
            attempts = session.scalars(select(Attempt)).all()
            open_attempts = [a for a in attempts if a.status == AttemptStatus.RUNNING]
            interrupted = [a for a in attempts if a.error == INTERRUPTED]
    finally:
        engine.dispose()
    assert not open_attempts, "an attempt the outage interrupted is still open"
    assert "Traceback" not in worker_log.read_text()
    assert interrupted, "no attempt was in flight when the database stopped"


OUTAGE_DEADLINE = """
[tasks]
max_retry_delay_s = 1
database_outage_s = 2.0

[dispatch]
health_interval_s = 0.2
max_wait_delay_s = 0.5
"""


@pytest.mark.parametrize("db_cluster", [(OUTAGE_DEADLINE, False)], indirect=True)
def test_steps_are_left_for_recovery_not_failed_when_the_outage_outlasts_its_deadline(
    db_cluster: Cluster, postgres: PrivatePostgres, tmp_path: Path
) -> None:
    # No server answers: every step waits for gemma's health, retrying through SQL.
    asking = job("asking", steps=[chat("Hello {params.n}.")], params={"n": 0})
    submitted = {
        str(submit_job(db_cluster.config, asking, params={"n": n}, trigger="submit").run_id)
        for n in range(3)
    }
    worker_log = tmp_path / "worker.log"
    wait_until("every step waits for gemma", lambda: waiting_steps(postgres.url) == 3)
    postgres.crash()
    wait_until("every message dropped", lambda: len(dropped(worker_log)) >= len(submitted))
    postgres.start()

    lines = dropped(worker_log)
    assert len(lines) == len(submitted), "a message was dropped twice"
    assert {run_id for line in lines for run_id in submitted if run_id in line} == submitted
    assert "tasks.database_outage_s = 2" in lines[0]
    runs = runs_of(postgres.url)
    assert {run.status for run in runs} == {Status.QUEUED}, "a step was failed, not left"
