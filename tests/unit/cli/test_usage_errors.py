"""Usage errors from the real entry point: a usage line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--bogus"], "No such option: --bogus"),
        (["artifacts", "get", "ab" * 32, "--out", "x.wav", "--streams", "0"], "'--streams'"),
        (["show"], "Missing argument"),
        (["nonsense"], "No such command"),
        (["sim", "--like", "ollama"], "'ollama' is not one of"),
    ],
)
def test_a_usage_error_prints_usage_and_exits_2_without_a_traceback(
    args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkjobs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Usage: " in result.stderr
    assert "Traceback" not in result.stderr
