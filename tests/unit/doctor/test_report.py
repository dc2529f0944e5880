"""The report's exit code and its JSON shape."""

from __future__ import annotations

import io

from rich.console import Console

from sparkjobs.doctor import Finding, Report, Status

OK = Finding("broker", Status.OK, "answered in 0.3 ms")
WARN = Finding("broker persistence", Status.WARN, "none", "set `appendonly yes`")
DOWN = Finding("worker spark2", Status.DOWN, "no worker of spark2 answered", "start it")


def test_warnings_alone_exit_0() -> None:
    assert Report("spark1", [OK, WARN]).exit_code == 0


def test_anything_down_exits_1() -> None:
    assert Report("spark1", [OK, WARN, DOWN]).exit_code == 1


def test_an_unreachable_broker_or_database_exits_3() -> None:
    assert Report("spark1", [DOWN], unreachable=True).exit_code == 3


def test_json_shape() -> None:
    assert Report(None, [WARN]).to_json() == {
        "node": None,
        "ok": True,
        "exit_code": 0,
        "findings": [
            {
                "name": "broker persistence",
                "status": "warn",
                "detail": "none",
                "fix": "set `appendonly yes`",
            }
        ],
    }


def test_the_table_lists_fixes_for_what_is_not_ok() -> None:
    out = io.StringIO()
    Report("spark1", [OK, DOWN]).print(Console(file=out, width=120))
    text = out.getvalue()
    assert "fix worker spark2: start it" in text
    assert "fix broker" not in text
    assert "something is down" in text
