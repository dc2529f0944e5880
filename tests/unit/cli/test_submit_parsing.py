"""`submit` and the run commands parse their input and refuse bad input before any service.

The config points at a broker and a database that do not exist: a refusal with exit 2
(not 3) proves that the input was checked before anything was contacted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparkjobs.cli.main import app
from sparkjobs.config import load_config
from sparkjobs.errors import BadInput, SparkjobsError
from sparkjobs.runs.adhoc import chat_job, clone_job, literal, service_for_model, speak_job
from tests.support.cluster import cluster_toml
from tests.support.services import free_port


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        cluster_toml(
            broker_url=f"redis://127.0.0.1:{free_port()}/0",
            database_url=f"sqlite:///{tmp_path / 'none' / 'db.sqlite'}",
        )
    )
    return path


def invoke(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args], input=stdin)
    if isinstance(result.exception, SparkjobsError):
        return result.exception.exit_code, str(result.exception)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "speak"], "no text"),
        (["submit", "speak", "Hi.", "--file", "x.txt"], "not both"),
        (["submit", "speak", "Hi.", "--voice", "Tara"], "known: tara, leah"),
        (["submit", "chat", "Hi.", "--stream", "--json"], "leave out --json"),
        (["submit", "chat", "Hi.", "--max-tokens", "x"], "max-tokens"),
        (["submit", "clone", "Hi.", "--ref-audio", "missing.wav"], "cannot read"),
        (["runs", "--limit", "0"], "limit"),
        (["submit", "nothing"], "No such command"),
    ],
)
def test_bad_input_is_exit_2_before_any_service_is_contacted(
    config_path: Path, args: list[str], message: str
) -> None:
    code, output = invoke(config_path, *args)
    assert code == 2
    assert message in output


def test_good_input_gets_as_far_as_the_broker_and_stops_there_with_exit_3(
    config_path: Path,
) -> None:
    code, output = invoke(config_path, "submit", "speak", "-", stdin="Hello from stdin.")
    assert code == 3
    assert "broker" in output


def test_every_command_has_help(config_path: Path) -> None:
    for command in (
        ["submit", "speak"],
        ["submit", "clone"],
        ["submit", "chat"],
        ["submit", "job"],
        ["runs"],
        ["show"],
        ["wait"],
        ["cancel"],
        ["rerun"],
    ):
        code, output = invoke(config_path, *command, "--help")
        assert code == 0
        assert "--json" in output


def test_texts_are_literal_and_jobs_are_one_checked_step(config_path: Path) -> None:
    config = load_config(config_path)
    speech = speak_job(config, "Say {this} literally.", voice="leah")
    [step] = speech.steps
    assert step.text == literal("Say {this} literally.") == "Say {{this}} literally."
    assert step.text.format() == "Say {this} literally."
    assert (speech.name, speech.kind) == ("speak", "speak")
    reply = chat_job(config, "Hi", model="qwen2.5:32b", stream_tokens=True)
    assert reply.steps[0].service == "qwen"
    assert service_for_model(config, "gemma-4-26b-a4b") == "gemma"
    assert clone_job(config, "Hi", ref_audio="A" * 64).steps[0].ref_audio == "a" * 64
    with pytest.raises(BadInput, match="is not a sha256"):
        clone_job(config, "Hi", ref_audio="me.wav")
