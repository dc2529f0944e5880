"""Bad input is exit 2 and infrastructure that does not answer exit 3, with nothing
queued (no key under the test's Redis prefix, empty queues) and no run written."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparkjobs.cli.main import app
from sparkjobs.errors import SparkjobsError
from tests.integration.cli.support import broker_keys, queue_lengths, run_count, with_jobs
from tests.support.cluster import Cluster, cluster_toml
from tests.support.services import Broker, free_port

pytestmark = pytest.mark.redis


def invoke(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Run the CLI in this process; the exit code `sparkjobs` would give, and its message."""
    result = CliRunner().invoke(app, ["--config", str(config), *args], input=stdin)
    if isinstance(result.exception, SparkjobsError):
        return result.exception.exit_code, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"not a wav at all, just bytes" * 10)
    return [
        (["submit", "speak", "   "], "text to speak is empty"),
        (["submit", "speak", "-"], "text to speak is empty"),  # stdin is empty
        (["submit", "speak", "Hi.", "--voice", "tarra"], "did you mean 'tara'"),
        (["submit", "speak", "Hi.", "--service", "orfeus"], "known: clone, gemma, orpheus"),
        (["submit", "speak", "Hi.", "--service", "gemma"], "cannot speak"),
        (["submit", "chat", "Hi.", "--model", "llama3"], "gemma: gemma-4-26b-a4b"),
        (["submit", "chat", "Hi.", "--service", "orpheus"], "cannot chat"),
        (["submit", "chat", "Hi.", "--max-tokens", "0"], "max-tokens"),
        (["submit", "clone", "Hi.", "--ref-audio", str(tmp_path / "none.wav")], "cannot read"),
        (["submit", "clone", "Hi.", "--ref-audio", str(noise)], "is not a WAV"),
        (["submit", "clone", "Hi."], "--ref-audio"),
        (
            ["submit", "speak", "Hi.", "--wait", "--out", str(tmp_path / "no" / "x.wav")],
            "does not exist",
        ),
        (["submit", "speak", "Hi.", "--wait", "--out", str(tmp_path)], "is a directory"),
        (["submit", "speak", "Hi.", "--out", str(tmp_path / "x.wav")], "--out needs --wait"),
        (["submit", "speak", "Hi.", "--stream"], "--stream writes the audio as it is made"),
        (["submit", "speak", "Hi.", "--out", "-", "--json"], "--out - writes the audio to stdout"),
        (["submit", "job", "greting"], "did you mean 'greeting'"),
        (["submit", "job", "greeting", "--param", "town=Oslo"], "known parameters: name, times"),
        (["submit", "job", "greeting", "--param", "times=many"], "takes a int"),
        (["runs", "--status", "lost"], "not a status"),
        (["runs", "--since", "yesterday"], "not understood"),
        (["show", "not-a-run"], "is not a run id"),
        (["cancel", "8a5bd5ea-5a9f-4a63-9a43-1e2ab1b5f0d1"], "no run"),
    ]


def test_every_bad_input_is_exit_2_and_queues_and_writes_nothing(
    cluster: Cluster, broker: Broker, tmp_path: Path
) -> None:
    with_jobs(cluster, tmp_path)
    for args, message in bad_inputs(tmp_path):
        code, output = invoke(cluster.path, *args, stdin="")
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert broker_keys(broker) == [], args
        assert queue_lengths(broker) == (0, 0)
        assert run_count(cluster) == 0, args


def test_an_unreachable_broker_is_exit_3_naming_it_and_nothing_is_written(
    cluster: Cluster, tmp_path: Path
) -> None:
    dead = tmp_path / "dead-broker.toml"
    dead.write_text(
        cluster_toml(
            broker_url=f"redis://127.0.0.1:{free_port()}/0", database_url=cluster.config.database
        )
    )
    for args in (["submit", "speak", "Hi."], ["submit", "chat", "Hi.", "--wait"]):
        code, output = invoke(dead, *args)
        assert code == 3
        assert "broker redis://127.0.0.1:" in output
        assert "unreachable" in output
    assert run_count(cluster) == 0


def test_an_unreachable_database_is_exit_3_naming_it_and_nothing_is_queued(
    broker: Broker, tmp_path: Path
) -> None:
    dead = tmp_path / "dead-db.toml"
    port = free_port()
    dead.write_text(
        cluster_toml(
            broker_url=broker.url,
            broker_key_prefix=broker.prefix,
            database_url=f"postgresql+psycopg://nobody:sekrit@127.0.0.1:{port}/none",
        )
    )
    for args in (
        ["submit", "speak", "Hi."],
        ["runs"],
        ["show", "8a5bd5ea-5a9f-4a63-9a43-1e2ab1b5f0d1"],
    ):
        code, output = invoke(dead, *args)
        assert code == 3, (args, output)
        assert f"PostgreSQL database none on 127.0.0.1:{port}" in output
        assert "sekrit" not in output
    assert broker_keys(broker) == []


# Ctrl-C in a terminal reaches a command whose SIGINT is at its default. A test run
# started in the background (`make test &`, some CI runners) ignores SIGINT, and its
# children inherit that, so the command is started through this, which resets it.
AS_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
    sys.executable,
]


def test_ctrl_c_while_waiting_is_exit_130_and_the_run_goes_on(
    cluster: Cluster, broker: Broker
) -> None:
    # No worker: the run stays queued, so the command is surely still waiting.
    process = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, "-m", "sparkjobs", "submit", "speak", "Hello.", "--wait"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # printed from inside the wait loop
        assert first.strip() == "queued", first
        assert run_count(cluster) == 1
        assert broker_keys(broker)
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
        stderr = first + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()  # closes the pipes too
    assert process.returncode == 130
    assert "goes on" in stderr
    assert "sparkjobs wait" in stderr
    assert broker_keys(broker)  # its message waits for a worker
    code, output = invoke(cluster.path, "runs", "--json")
    assert code == 0
    assert '"status": "queued"' in output
