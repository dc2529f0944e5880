"""`sparkjobs submit` never crashes on its arguments: whatever the command line, it is
help (exit 0), a refusal naming the value (exit 2), or, for input that is good, the
broker that does not answer (exit 3). The config points at a broker and a database
that do not exist, so nothing is ever queued or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sparkjobs.cli.main import app
from sparkjobs.errors import SparkjobsError
from tests.unit.fuzz.support import FUZZ, unreachable_config

JOB_FILE = """
from sparkjobs.jobs.define import chat, job, speak

job("morning-briefing", params={"city": "Berlin"},
    steps=[chat("Weather in {params.city}"), speak("{previous}", voice="tara")])
"""
WORDS = st.text(max_size=30) | st.sampled_from(["Hello.", "-", "", " ", "{previous}", "--json"])
NAMES = st.sampled_from(["tara", "Tara", "orpheus", "gemma", "qwen", "clone", "nope", "", "-1"])
NUMBERS = st.sampled_from(["1", "0", "-5", "x", "1e9", "99999999999999999999", "nan", ""])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("submit")
    schedules = root / "schedules"
    schedules.mkdir()
    (schedules / "briefing.py").write_text(JOB_FILE)
    (root / "text.txt").write_text("A text to read.")
    (root / "binary.bin").write_bytes(b"\xff\xfe\x00\x81" * 10)
    (root / "not.wav").write_bytes(b"RIFF....WAVEjunk")
    config = unreachable_config(root, schedules_dir=str(schedules))
    return {
        "config": str(config),
        "text": str(root / "text.txt"),
        "binary": str(root / "binary.bin"),
        "wav": str(root / "not.wav"),
        "dir": str(root),
        "missing": str(root / "missing" / "x"),
        "out": str(root / "out.wav"),
        "nul": "a\x00b",
        "empty": "",
    }


def option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda value: [flag, value])


def paths(files: dict[str, str]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(files.values())) | st.text(max_size=12)


def command_lines(files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    """`submit` command lines: a command, then options and arguments in any order."""
    shared = [
        option("--service", NAMES),
        option("--file", paths(files)),
        st.just(["--json"]),
        st.just(["--wait"]),
        option("--out", paths(files)),
    ]
    commands = {
        "speak": [option("--voice", NAMES)],
        "clone": [option("--ref-audio", paths(files)), option("--ref-text", WORDS)],
        "chat": [
            option("--model", NAMES),
            option("--system", WORDS),
            option("--max-tokens", NUMBERS),
            st.just(["--stream"]),
        ],
        "job": [option("--param", st.sampled_from(["city=Oslo", "town=Oslo", "city", "=x", ""]))],
    }
    first = {"job": st.sampled_from(["morning-briefing", "morning", ""]) | WORDS}

    def build(command: str) -> st.SearchStrategy[list[str]]:
        positional = st.lists(first.get(command, WORDS), max_size=1)
        options = st.lists(st.one_of(*commands[command], *shared), max_size=3)
        rare = st.lists(st.sampled_from([["--help"], ["extra"], ["-"]]), max_size=1)
        return st.tuples(positional, options, rare).map(
            lambda parts: [
                "submit",
                command,
                *parts[0],
                *(a for o in parts[1] for a in o),
                *(a for o in parts[2] for a in o),
            ]
        )

    return st.sampled_from(sorted(commands)).flatmap(build)


def outcome(config: str, argv: list[str], stdin: str) -> tuple[int, str]:
    """The exit code and message of one command line; any other exception fails the test."""
    result = CliRunner().invoke(app, ["--config", config, *argv], input=stdin)
    exc: Any = result.exception
    if isinstance(exc, SparkjobsError):
        return exc.exit_code, str(exc)
    assert exc is None or isinstance(exc, SystemExit), (argv, repr(exc), result.output)
    return result.exit_code, result.output


@FUZZ
@given(data=st.data(), stdin=st.text(max_size=20))
def test_any_submit_command_line_is_refused_clearly_or_reaches_the_broker(
    files: dict[str, str], data: st.DataObject, stdin: str
) -> None:
    argv = data.draw(command_lines(files))
    code, message = outcome(files["config"], argv, stdin)
    event(f"exit {code}" + (f": {message.splitlines()[0][:40]}" if code == 2 else ""))
    assert code in (0, 2, 3), (argv, code, message)
    if code == 0:
        assert "--help" in argv, (argv, message)
    else:
        assert message.strip(), argv
    if code == 3:
        assert "127.0.0.1:1" in message, message  # the broker, named


@FUZZ
@given(
    argv=st.lists(
        st.text(max_size=12) | st.sampled_from(["submit", "speak", "--voice"]), max_size=6
    )
)
def test_any_argument_list_at_all_never_crashes(files: dict[str, str], argv: list[str]) -> None:
    code, _ = outcome(files["config"], ["submit", *argv], "")
    assert code in (0, 2, 3), argv


def test_the_fuzzed_config_really_is_unreachable(files: dict[str, str], tmp_path: Path) -> None:
    code, message = outcome(files["config"], ["submit", "speak", "Hello."], "")
    assert (code, "broker redis://127.0.0.1:1/0 is unreachable" in message) == (3, True)
