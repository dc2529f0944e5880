"""Two real beats while their Redis is SIGKILLed and restarted, and the active beat killed.

The Redis is the test's own redis-server (append-only, as `up` runs it), restarted on
the same socket and data dir: once quickly, while the lock key may or may not have
reached its append-only file, and once for longer than the on-time window together
with a SIGKILL of the active beat. Assertions are on SQL (every slot once, fired or
skipped with the misfire reason) and on the queue (no slot published twice).
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import redis

from sparkjobs.broker.client import key, queue_keys
from sparkjobs.broker.leader import LeaderLock
from sparkjobs.store.models import Status, Trigger
from sparkjobs.up.redis_server import find_redis_server, redis_server_argv
from tests.integration.scheduling.test_two_beats import HANG_GUARD_S, slots_of, wait_for_slots
from tests.support.cluster import Cluster, clean_env, cluster_toml

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

ON_TIME_S = 2.0  # slots handled later than this are missed (the default is 30 s)
JOBS = """\
from sparkjobs import chat, every, job

job("ticker", schedule=every(seconds=1), overlap="queue",
    steps=[chat("Say the time: {slot:%H:%M:%S}")])
job("catchup", schedule=every(seconds=1), overlap="queue", misfire="run_once",
    steps=[chat("Catch up at {slot:%H:%M:%S}")])
"""


class RestartableRedis:
    """A redis-server of the test's own: SIGKILL it and start it again on the same files."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="sjb-"))  # short: a socket path
        self.socket = self.home / "redis.sock"
        self.url = f"redis+socket://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self._client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_server_argv(find_redis_server(), socket=self.socket, data_dir=self.home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            try:
                self.client().ping()
                return
            except (redis.ConnectionError, FileNotFoundError):
                assert self.process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return self._client  # reconnects by itself after a restart

    def close(self) -> None:
        self._client.close()
        if self.process is not None:
            self.kill()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def beat_cluster(database_url: str, tmp_path: Path) -> Iterator[tuple[Cluster, RestartableRedis]]:
    """Two beats on this leg's database and a Redis the test may kill."""
    from sparkjobs.store.schema import upgrade

    upgrade(database_url)
    server = RestartableRedis()
    server.start()
    schedules = tmp_path / "schedules"
    schedules.mkdir()
    (schedules / "jobs.py").write_text(JOBS)
    path = tmp_path / "sparkjobs.toml"
    path.write_text(
        cluster_toml(broker_url=server.url, broker_key_prefix="sjbeat:", database_url=database_url,
                     data_dir=str(server.home), schedules_dir=str(schedules))
        + f"\n[beat]\non_time_s = {ON_TIME_S}\n"
    )  # fmt: skip
    cluster = Cluster(path=path, env=clean_env(SPARKJOBS_CONFIG=str(path)))
    try:
        yield cluster, server
    finally:
        cluster.stop_all()
        server.close()


def holder(
    cluster: Cluster, server: RestartableRedis, logs: list[Path], *, besides: int | None = None
) -> int:
    """Which beat holds the lock (the log that announced the token in Redis).

    With `besides`, wait until another beat than that one holds it: the key a killed
    beat held may have survived the restart, until its TTL ends.
    """
    deadline = time.monotonic() + HANG_GUARD_S
    lock = key(cluster.config, "beat", "lock")
    while True:
        token = server.client().get(lock)
        if token is not None:
            said = f"token {token.decode()}"
            found = [i for i, log in enumerate(logs) if said in log.read_text()]
            if found and found[0] != besides:
                return found[0]
        assert time.monotonic() < deadline, "no beat holds the lock"
        time.sleep(0.1)


def published(server: RestartableRedis) -> Counter[str]:
    """How many step messages each run has in spark1's queue (no worker takes them)."""
    counts: Counter[str] = Counter()
    client = server.client()
    for queue in queue_keys("sjbeat:", "spark1"):
        for raw in client.lrange(queue, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            counts[body[1]["run_id"]] += 1
    return counts


def test_slots_fire_once_through_redis_restarts_and_a_killed_active_beat(
    beat_cluster: tuple[Cluster, RestartableRedis], database_url: str, tmp_path: Path
) -> None:
    cluster, server = beat_cluster
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    for log in logs:
        cluster.start("beat", log=log)
    holder(cluster, server, logs)
    wait_for_slots(database_url, "ticker", 3)

    # A short restart: the lock key may or may not be in the append-only file.
    server.kill()
    server.start()
    count = len(slots_of(database_url, "ticker"))
    wait_for_slots(database_url, "ticker", count + 3)

    # The active beat dies while Redis is down for longer than a slot may be late.
    active = holder(cluster, server, logs)
    server.kill()
    cluster.processes[active].send_signal(signal.SIGKILL)
    cluster.processes[active].wait(timeout=10)
    time.sleep(ON_TIME_S + 3)  # not a timing assertion: makes the missed slots exist
    server.start()
    assert holder(cluster, server, logs, besides=active) == 1 - active
    count = len(slots_of(database_url, "ticker"))
    for job in ("ticker", "catchup"):
        wait_for_slots(database_url, job, count + 4)

    messages = published(server)
    for job in ("ticker", "catchup"):
        runs = slots_of(database_url, job)
        slots: list[datetime] = [run.scheduled_for for run in runs if run.scheduled_for]
        assert len(slots) == len(runs) == len(set(slots)), f"{job}: a slot has two runs"
        gaps = {later - earlier for earlier, later in pairwise(slots)}
        assert gaps == {timedelta(seconds=1)}, f"{job}: a slot is missing"
        assert {run.trigger for run in runs} == {Trigger.SCHEDULE}
        assert {run.status for run in runs} <= {Status.QUEUED, Status.SKIPPED}
        skipped = [run for run in runs if run.status == Status.SKIPPED]
        assert skipped, f"{job}: no slot was missed while Redis was down"
        for run in skipped:
            assert run.error is not None
            assert "missed by" in run.error
            assert "misfire='skip'" in run.error if job == "ticker" else "run_once" in run.error
        fired = {str(run.id) for run in runs if run.status == Status.QUEUED}
        twice = {run for run, count in messages.items() if run in fired and count > 1}
        assert not twice, f"{job}: slots published more than once: {twice}"
        assert not set(messages) & {str(run.id) for run in skipped}
    assert cluster.processes[1 - active].poll() is None, "the surviving beat exited"


def test_a_holder_keeps_its_lock_when_a_restarted_redis_brings_the_key_back() -> None:
    server = RestartableRedis()
    try:
        server.start()
        client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2)
        lock = LeaderLock(client, "sjlock:beat", ttl_s=60, role="beat")  # outlives the restart
        other = LeaderLock(client, "sjlock:beat", ttl_s=60, role="beat")
        assert lock.hold()
        server.kill()
        assert not lock.hold()  # Redis does not answer: not held
        server.start()
        assert server.client().get("sjlock:beat") == lock.token.encode(), "the key was lost"
        assert not other.hold()
        assert lock.hold(), "the holder waits for its own key to expire"
        client.close()
    finally:
        server.close()
