"""The whole stack on two hosts: the bondnet test bed, as the two Sparks run it in production.

spark1 (198.18.0.1): Redis with a password and append-only, PostgreSQL (started here, as
the `postgres` user), the spark1 worker with simulated vLLM and Ollama, the active beat,
Flower and the run page. spark2 (198.18.0.2): the spark2 worker with simulated Orpheus and
clone servers, and a standby beat. Every process reads one config a user would write;
they reach each other only through the bond addresses. Assertions are on files, exit
codes and rows in SQL, never on how long anything took; deadlines only guard against hangs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BONDNET = REPO.parent / "shared" / "testbed" / "bondnet"
NARRATOR = REPO / "schedules" / "voices" / "narrator.wav"
HANG_GUARD_S = 90.0
TIME_SCALE = 200.0
REDIS_PORT = 6379
PG_PORT = 5432

TICKER = """\
from sparkjobs import chat, every, job

job("ticker", schedule=every(seconds=1), overlap="queue",
    steps=[chat("Say the time: {slot:%H:%M:%S}", service="gemma")])
"""
CLONE_FROM_SPARK1 = """\
from sparkjobs import clone, job

job("voice-from-spark1", steps=[clone(
    "Good morning. The reference voice came over the bond.",
    ref_audio="{sha256}",
    ref_text="Hello from spark two. This is the reference voice for the clone example.",
    service="clone")])
"""
SLOTS = """
import json, sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1])
with engine.connect() as c:
    rows = c.execute(text("SELECT scheduled_for FROM runs WHERE job = 'ticker' "
                          "ORDER BY scheduled_for")).scalars().all()
print(json.dumps([r.isoformat() for r in rows]))
"""
HTTP_GET = """
import sys, httpx
auth = tuple(sys.argv[2].split(":", 1)) if len(sys.argv) > 2 else None
print(httpx.get(sys.argv[1], auth=auth, timeout=5).status_code)
"""


def require(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the two-node test needs {what} (CI must provide it)")
    pytest.skip(f"the two-node test needs {what}")


class TwoNodes:
    """The test bed, its config, the processes started in it, and how to run commands there."""

    def __init__(self, home: Path, logs: Path) -> None:
        self.home = home
        self.logs = logs
        self.prefix = f"sjt{secrets.token_hex(3)}-"
        self.redis_password = secrets.token_hex(12)
        self.db_password = secrets.token_hex(12)
        self.flower_auth = f"admin:{secrets.token_hex(8)}"
        self.config = home / "sparkjobs.toml"
        self.schedules = home / "schedules"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        base = {k: v for k, v in os.environ.items() if not k.startswith("SPARKJOBS_")}
        base |= {"PYTHONUNBUFFERED": "1", "BONDNET_PREFIX": self.prefix, "PYTHONPATH": str(REPO)}
        base["SPARKJOBS_CONFIG"] = str(self.config)
        self.env = base
        self.pg_data = Path(tempfile.mkdtemp(prefix="sjpg-"))  # short: its unix socket

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://sparkjobs:{self.db_password}@198.18.0.1:{PG_PORT}/sparkjobs"

    def node_env(self, node: str) -> dict[str, str]:
        # Each node keeps its artifacts on its own disk, as the two Sparks do.
        return {**self.env, "SPARKJOBS_DATA_DIR": str(self.home / f"data-{node}")}

    def bondnet(self, *args: str) -> str:
        done = subprocess.run(
            [str(BONDNET), *args], env=self.env, capture_output=True, text=True,
            check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"bondnet {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def run(
        self, node: str, *argv: str, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BONDNET), "exec", node, *argv], env=self.node_env(node), capture_output=True,
            text=True, check=False, timeout=timeout_s,
        )  # fmt: skip

    def sparkjobs(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(node, sys.executable, "-m", "sparkjobs", *args)

    def python(self, node: str, code: str, *args: str) -> str:
        done = self.run(node, sys.executable, "-c", code, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, name: str, node: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(BONDNET), "exec", node, *argv], env=self.node_env(node),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def start_sparkjobs(self, name: str, node: str, *args: str) -> subprocess.Popen[bytes]:
        return self.start(name, node, sys.executable, "-m", "sparkjobs", *args)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def teardown(self) -> None:
        for name in list(self.processes):
            if self.processes[name].poll() is None:
                self.processes[name].send_signal(signal.SIGTERM)
        for name in list(self.processes):
            self.stop(name)
        self.bondnet("down")  # ends whatever still runs inside, by pid
        shutil.rmtree(self.pg_data, ignore_errors=True)


def config_toml(bed: TwoNodes) -> str:
    """sparkjobs.example.toml with the test bed's addresses, secrets and fast simulators."""
    sims = "".join(f"\n[sim.{name}]\ntime_scale = {TIME_SCALE}\n" for name in
                   ("gemma", "qwen", "orpheus", "clone"))  # fmt: skip
    return f"""\
broker_url = "redis://:{bed.redis_password}@198.18.0.1:{REDIS_PORT}/0"
database_url = "{bed.database_url}"
schedules_dir = "{bed.schedules}"

[nodes.spark1]
bond_address = "198.18.0.1"

[nodes.spark2]
bond_address = "198.18.0.2"

[services.gemma]
node = "spark1"
kind = "openai"
url = "http://198.18.0.1:8002"
models = ["gemma-4-26b-a4b"]
max_in_flight = 32
default = true

[services.qwen]
node = "spark1"
kind = "ollama"
url = "http://198.18.0.1:11434"
models = ["qwen2.5:32b"]
max_in_flight = 1

[services.orpheus]
node = "spark2"
kind = "orpheus"
url = "http://198.18.0.2:8766"
backend_url = "http://198.18.0.2:5006"
voices = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]
max_in_flight = 1
default = true

[services.clone]
node = "spark2"
kind = "qwen-clone"
url = "http://198.18.0.2:8765"
models = ["faster-qwen3-tts"]
voices = ["default"]
max_in_flight = 1

[tasks]
max_retry_delay_s = 1

[worker]
shutdown_grace_s = 2.0

[artifacts]
port = 8780
token = "{secrets.token_hex(16)}"

[flower]
address = "198.18.0.1"
port = 5555
node = "spark1"
basic_auth = ["{bed.flower_auth}"]

[web]
address = "198.18.0.1"
port = 8800
node = "spark1"
token = "{secrets.token_hex(16)}"
{sims}"""


def start_postgres(bed: TwoNodes) -> None:
    """initdb and postgres as the `postgres` user, listening on spark1's bond address."""
    bindir = Path(
        subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    owner = pwd.getpwnam("postgres")
    os.chown(bed.pg_data, owner.pw_uid, owner.pw_gid)
    data = bed.pg_data / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all 198.18.0.0/24 scram-sha-256\n")
    bed.start(
        "postgres", "spark1", *as_postgres, str(bindir / "postgres"), "-D", str(data),
        "-p", str(PG_PORT), "-c", "listen_addresses=198.18.0.1",
        "-c", f"unix_socket_directories={bed.pg_data}", "-c", "fsync=off",
    )  # fmt: skip
    psql = [*as_postgres, str(bindir / "psql"), "-h", str(bed.pg_data), "-p", str(PG_PORT),
            "-U", "postgres", "-v", "ON_ERROR_STOP=1"]  # fmt: skip
    deadline = time.monotonic() + HANG_GUARD_S
    while bed.run("spark1", *psql, "-c", "SELECT 1").returncode != 0:
        assert bed.processes["postgres"].poll() is None, bed.log("postgres")
        assert time.monotonic() < deadline, f"PostgreSQL did not start: {bed.log('postgres')}"
        time.sleep(0.2)
    for sql in (
        f"CREATE ROLE sparkjobs LOGIN PASSWORD '{bed.db_password}'",
        "CREATE DATABASE sparkjobs OWNER sparkjobs",
    ):
        done = bed.run("spark1", *psql, "-c", sql)
        assert done.returncode == 0, done.stderr


def stop_postgres(bed: TwoNodes) -> None:
    """A fast shutdown (SIGINT to the postmaster), so no shared memory is left behind."""
    pid_file = bed.pg_data / "data" / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_until(what: str, bed: TwoNodes, check: object) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not check():  # type: ignore[operator]
        for name, process in bed.processes.items():
            assert process.poll() is None, (
                f"{name} exited while waiting for {what}: {bed.log(name)}"
            )
        assert time.monotonic() < deadline, f"{what} did not happen in {HANG_GUARD_S} s"
        time.sleep(0.3)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[TwoNodes]:
    """The whole stack on the test bed; everything, namespaces included, is torn down."""
    root = os.geteuid() == 0
    require("root and iproute2", root and shutil.which("ip") is not None)
    require(f"the bondnet test bed at {BONDNET}", BONDNET.is_file())
    require("redis-server", shutil.which("redis-server") is not None)
    require("PostgreSQL (pg_config, runuser)", bool(shutil.which("pg_config")) and
            bool(shutil.which("runuser")))  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    bed = TwoNodes(tmp_path, logs)
    try:
        bed.schedules.mkdir()
        shutil.copy(REPO / "schedules" / "briefing.py", bed.schedules)
        (bed.schedules / "ticker.py").write_text(TICKER)
        sha256 = hashlib.sha256(NARRATOR.read_bytes()).hexdigest()
        (bed.schedules / "voice_from_spark1.py").write_text(CLONE_FROM_SPARK1.format(sha256=sha256))
        bed.config.write_text(config_toml(bed))
        bed.bondnet("up")
        redis_dir = tmp_path / "redis"
        redis_dir.mkdir()
        bed.start(
            "redis", "spark1", shutil.which("redis-server") or "redis-server",
            "--port", str(REDIS_PORT), "--bind", "198.18.0.1", "--requirepass", bed.redis_password,
            "--dir", str(redis_dir), "--appendonly", "yes", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no",
        )  # fmt: skip
        start_postgres(bed)
        upgraded = bed.sparkjobs("spark1", "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        bed.start_sparkjobs(
            "sim-spark1", "spark1", "sim", "--service", "gemma", "--service", "qwen"
        )
        bed.start_sparkjobs(
            "sim-spark2", "spark2", "sim", "--service", "orpheus", "--service", "clone"
        )
        bed.start_sparkjobs("worker-spark1", "spark1", "worker", "--node", "spark1")
        bed.start_sparkjobs("worker-spark2", "spark2", "worker", "--node", "spark2")
        bed.start_sparkjobs("flower", "spark1", "flower")
        bed.start_sparkjobs("web", "spark1", "web")
        bed.start_sparkjobs("beat-spark1", "spark1", "beat")
        wait_until("the spark1 beat to be active", bed,
                   lambda: "active scheduler now" in bed.log("beat-spark1"))  # fmt: skip
        bed.start_sparkjobs("beat-spark2", "spark2", "beat")
        wait_until("doctor to find everything well", bed,
                   lambda: bed.sparkjobs("spark1", "doctor", "--json").returncode == 0)  # fmt: skip
        yield bed
    finally:
        for name in list(bed.processes):
            if name != "postgres" and bed.processes[name].poll() is None:
                bed.processes[name].send_signal(signal.SIGTERM)
        stop_postgres(bed)
        bed.teardown()


def ticker_slots(bed: TwoNodes) -> list[datetime]:
    out = bed.python("spark1", SLOTS, bed.database_url)
    return [datetime.fromisoformat(slot) for slot in json.loads(out)]


def is_wav(path: Path) -> bool:
    head = path.read_bytes()[:12] if path.exists() else b""
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE" and path.stat().st_size > 44


def test_the_two_nodes_run_pipelines_artifacts_and_failover_over_the_bond(
    bed: TwoNodes, tmp_path: Path
) -> None:
    # doctor on spark2 knows it is spark2 from its address, and finds all well.
    done = bed.sparkjobs("spark2", "doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["node"] == "spark2"
    seen = {f["name"]: f["status"] for f in report["findings"]}
    assert seen["bond spark2"] == seen["broker password"] == seen["broker persistence"] == "ok"
    assert seen["worker spark1"] == seen["worker spark2"] == "ok"

    # Flower and the run page answer on spark1's bond address, from spark2.
    flower = bed.python("spark2", HTTP_GET, "http://198.18.0.1:5555/healthcheck", bed.flower_auth)
    assert flower.strip() == "200"
    assert bed.python("spark2", HTTP_GET, "http://198.18.0.1:8800/healthz").strip() == "200"

    # The morning briefing: text on spark1, audio on spark2, delivered on spark1.
    briefing = tmp_path / "briefing.wav"
    done = bed.sparkjobs(
        "spark1", "submit", "job", "morning-briefing", "--wait", "--out", str(briefing)
    )
    assert done.returncode == 0, done.stderr + bed.log("worker-spark1") + bed.log("worker-spark2")
    assert is_wav(briefing)

    # A restarted worker rejoins without manual steps: its queue is consumed again.
    bed.stop("worker-spark2")
    assert bed.processes["worker-spark2"].returncode is not None
    bed.start_sparkjobs("worker-spark2", "spark2", "worker", "--node", "spark2")

    # `submit speak` from spark1 gets audio made on spark2, pulled over the bond.
    hello = tmp_path / "hello.wav"
    done = bed.sparkjobs(
        "spark1", "submit", "speak", "Hello from spark two.", "--voice", "tara",
        "--wait", "--out", str(hello),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + bed.log("worker-spark2")
    assert is_wav(hello)
    audio = hashlib.sha256(hello.read_bytes()).hexdigest()
    listed = json.loads(bed.sparkjobs("spark1", "artifacts", "ls", "--json").stdout)
    holders = {a["sha256"]: set(a["nodes"]) for a in listed}
    assert "spark2" in holders[audio]

    # A reference voice put on spark1 is used by a clone job that runs on spark2.
    put = bed.sparkjobs("spark1", "artifacts", "put", str(NARRATOR), "--node", "spark1", "--json")
    assert put.returncode == 0, put.stderr
    reference = json.loads(put.stdout)["sha256"]
    assert reference == hashlib.sha256(NARRATOR.read_bytes()).hexdigest()
    cloned = tmp_path / "clone.wav"
    done = bed.sparkjobs(
        "spark1", "submit", "job", "voice-from-spark1", "--wait", "--out", str(cloned)
    )
    assert done.returncode == 0, done.stderr + bed.log("worker-spark2")
    assert is_wav(cloned)
    listed = json.loads(bed.sparkjobs("spark1", "artifacts", "ls", "--json").stdout)
    holders = {a["sha256"]: set(a["nodes"]) for a in listed}
    assert holders[reference] == {"spark1", "spark2"}  # fetched over the bond by spark2

    # Killing the active beat hands scheduling to the standby: no slot lost or doubled.
    wait_until("3 ticker slots", bed, lambda: len(ticker_slots(bed)) >= 3)
    before_kill = len(ticker_slots(bed))
    bed.stop("beat-spark1", signal.SIGKILL)
    bed.processes.pop("beat-spark1")
    wait_until("the standby to take over", bed,
               lambda: "active scheduler now" in bed.log("beat-spark2"))  # fmt: skip
    wait_until("slots after the failover", bed, lambda: len(ticker_slots(bed)) >= before_kill + 4)

    # The killed beat comes back as the standby, and still no slot is doubled.
    (bed.logs / "beat-spark1.log").rename(bed.logs / "beat-spark1-killed.log")
    bed.start_sparkjobs("beat-spark1", "spark1", "beat")
    after_rejoin = len(ticker_slots(bed))
    wait_until("slots after the rejoin", bed, lambda: len(ticker_slots(bed)) >= after_rejoin + 3)
    assert "active scheduler now" not in bed.log("beat-spark1")
    slots = ticker_slots(bed)
    assert len(slots) == len(set(slots)), "a slot has more than one run"
    assert {later - earlier for earlier, later in pairwise(slots)} == {timedelta(seconds=1)}
