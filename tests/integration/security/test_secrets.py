"""With every secret set, every component works, and no output ever shows a secret.

The Redis password reaches the worker, beat, Flower, the run page and API, `submit`,
`ping` and `doctor`: each does its job through the locked Redis. Then every output
is read and searched for each secret: the processes' logs, `config check` (JSON and
text), the Celery messages and every other key in Redis, Flower's pages and API, the
workers' metrics, the run page and the API, and the processes' command lines."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sparkjobs.broker.client import key, queue_keys
from sparkjobs.sim import SimHost
from tests.integration.security.conftest import SECRETS, Secured, wait_for
from tests.support.sim import TEST_TIME_SCALE, RunningSims

pytestmark = pytest.mark.redis


def queued_messages(secured: Secured) -> list[str]:
    """The Celery messages waiting in both nodes' queues, raw and with their bodies decoded."""
    client = secured.redis.client()
    found = []
    for node in ("spark1", "spark2"):
        for name in queue_keys(secured.prefix, node):
            for raw in client.lrange(name, 0, -1):
                message = json.loads(raw)
                found.append(raw.decode())
                found.append(base64.b64decode(message["body"]).decode())
    client.close()
    return found


def everything_in_redis(secured: Secured) -> list[str]:
    """Every value under the test's prefix, whatever its type."""
    client = secured.redis.client()
    dumped = []
    for name in client.scan_iter(match=f"{secured.prefix}*", count=500):
        kind = client.type(name).decode()
        value: Any = {
            "string": client.get,
            "list": lambda n: client.lrange(n, 0, -1),
            "hash": client.hgetall,
            "set": client.smembers,
            "zset": lambda n: client.zrange(n, 0, -1, withscores=True),
            "stream": client.xrange,
        }.get(kind, lambda n: b"")(name)
        dumped.append(f"{name!r} {value!r}")
    client.close()
    return dumped


def finished(secured: Secured, run_id: str) -> dict[str, Any] | None:
    with secured.web() as web:
        run: dict[str, Any] = web.get(f"/api/runs/{run_id}").json()
    return run if run["status"] not in ("queued", "running") else None


def submit_before_any_worker(secured: Secured, outputs: dict[str, str]) -> dict[str, str]:
    """`submit` writes and publishes through the password; the messages wait in Redis."""
    submitted = {}
    for kind, text in (("chat", "Say hello."), ("speak", "Good morning.")):
        done = secured.cluster.sparkjobs("submit", kind, text, "--json")
        assert done.returncode == 0, done.stderr
        submitted[kind] = json.loads(done.stdout)["run_id"]
        outputs[f"submit {kind}"] = done.stdout + done.stderr
    messages = queued_messages(secured)
    assert len(messages) == 4  # each message raw, and its body decoded
    assert all(submitted["chat"] in m for m in messages[:2])
    outputs["celery messages"] = "\n".join(messages)
    return submitted


def every_component_works(
    secured: Secured, submitted: dict[str, str], outputs: dict[str, str]
) -> str:
    """Workers, the API, beat, Flower, `ping` and `doctor` all do their job; the API's run."""
    cluster, config = secured.cluster, secured.config
    # The workers run both runs; the run page's API shows them (database and broker).
    for run_id in submitted.values():
        run = wait_for(f"run {run_id}", lambda r=run_id: finished(secured, r), cluster)
        assert run["status"] == "succeeded", run
    # The API submits through the broker too.
    with secured.web() as web:
        queued = web.post("/api/speak", json={"text": "From the API."})
    assert queued.status_code == 201, queued.text
    api_run: str = queued.json()["run_id"]
    run = wait_for("the API's run", lambda: finished(secured, api_run), cluster)
    assert run["status"] == "succeeded", run
    # Beat holds its lock in the locked Redis.
    lock = key(config, "beat", "lock")
    wait_for("beat's lock", lambda: secured.redis.client().exists(lock), cluster)
    # Flower reads the workers and the tasks' events through the broker.
    with secured.flower() as flower:

        def both_workers() -> Any:
            # Flower's refresh asks every worker with a short timeout: on a busy machine
            # one of them may answer only to the next one.
            found = flower.get("/api/workers?refresh=1").json()
            return found if len(found) >= 2 else None

        workers = wait_for("Flower's workers", both_workers, cluster)
        assert {name.split("@")[0] for name in workers} == {"spark1", "spark2"}
        tasks = wait_for(
            "Flower's tasks",
            lambda: [
                t for t in flower.get("/api/tasks").json().values() if api_run in str(t["kwargs"])
            ],
            cluster,
        )
        outputs["flower api workers"] = json.dumps(workers)
        pages = [
            "/",
            "/tasks",
            "/workers",
            "/broker",
            f"/task/{tasks[0]['uuid']}",
            "/metrics",
            "/api/tasks?limit=100",
            *(f"/worker/{name}" for name in workers),
        ]
        for page in pages:
            answer = flower.get(page)
            assert answer.status_code == 200, (page, answer.status_code)
            outputs[f"flower {page}"] = answer.text
    # `ping` and `doctor` reach the broker with the password.
    ping = cluster.sparkjobs("ping", "--json")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    outputs["ping"] = ping.stdout + ping.stderr
    doctor = cluster.sparkjobs("doctor", "--node", "spark1", "--json")
    report = json.loads(doctor.stdout)
    (reach,) = [f for f in report["findings"] if f["name"] == "broker"]
    assert reach["status"] == "ok", report
    outputs["doctor"] = doctor.stdout + doctor.stderr
    return api_run


def read_pages(secured: Secured, runs: list[str], outputs: dict[str, str]) -> None:
    """The run page, the API, both workers' metrics and every process's command line."""
    with secured.web() as web:
        pages = ["/", "/jobs", "/health", "/api/runs", "/api/jobs", "/api/health"]
        for page in pages + [f"/runs/{r}" for r in runs] + [f"/api/runs/{r}" for r in runs]:
            answer = web.get(page)
            assert answer.status_code == 200, (page, answer.status_code)
            outputs[f"web {page}"] = answer.text
    for node in ("spark1", "spark2"):
        port = secured.config.metrics_port(node)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert "sparkjobs_steps_finished_total" in metrics.text
        outputs[f"metrics {node}"] = metrics.text
    for process in secured.cluster.processes:
        outputs[f"argv of {process.pid}"] = Path(f"/proc/{process.pid}/cmdline").read_text()


def test_with_every_secret_set_every_component_works_and_no_output_shows_one(
    secured: Secured,
) -> None:
    cluster = secured.cluster
    outputs: dict[str, str] = {}
    submitted = submit_before_any_worker(secured, outputs)
    sims = RunningSims(SimHost(secured.config, (), {"time_scale": TEST_TIME_SCALE}))
    try:
        sims.ready()
        secured.start("worker-spark1", "worker", "--node", "spark1")
        secured.start("worker-spark2", "worker", "--node", "spark2")
        secured.start("beat", "beat")
        secured.start("web", "web")
        secured.start("flower", "flower")
        api_run = every_component_works(secured, submitted, outputs)
        read_pages(secured, [api_run, *submitted.values()], outputs)
    finally:
        cluster.stop_all()
        sims.stop()
    for form in ((), ("--json",)):
        check = cluster.sparkjobs("config", "check", *form)
        assert check.returncode == 0, check.stderr
        assert "***" in check.stdout
        outputs[f"config check {form}"] = check.stdout + check.stderr
    for log in sorted(secured.logs.glob("*.log")):
        outputs[f"log {log.name}"] = log.read_text()
        assert outputs[f"log {log.name}"].strip(), log.name
    outputs["redis"] = "\n".join(everything_in_redis(secured))

    leaks = [
        (where, secret) for where, text in outputs.items() for secret in SECRETS if secret in text
    ]
    assert leaks == []
    assert len(outputs) > 30  # every output above was read


def test_a_wrong_or_missing_broker_password_is_exit_3_naming_the_broker_masked(
    secured: Secured,
) -> None:
    cluster = secured.cluster
    port = secured.redis.port
    original = cluster.path.read_text()
    wrong = "wrong-pw-3Kd9sQ"
    commands = [
        ("ping",),
        ("doctor", "--node", "spark1", "--json"),
        ("submit", "speak", "Hello."),
        ("worker", "--node", "spark1"),
        ("beat",),
        ("flower",),
        ("web",),
    ]
    for password, expected in (
        (wrong, f"redis://:***@127.0.0.1:{port}/0"),
        (None, f"redis://127.0.0.1:{port}/0"),
    ):
        url = secured.redis.url(password)
        cluster.path.write_text(original.replace(secured.redis.url(), url))
        # Every command with a wrong password; a few suffice to show a missing one.
        for command in commands if password else commands[::3]:
            done = cluster.sparkjobs(*command)
            said = done.stdout + done.stderr
            assert done.returncode == 3, (command, said[-2000:])
            assert f"broker {expected}" in said or command[0] == "doctor", (command, said)
            assert expected in said, (command, said[-2000:])
            assert "password" in said, (command, said[-2000:])
            assert wrong not in said
            assert "Traceback" not in said
