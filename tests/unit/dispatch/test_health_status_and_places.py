"""The pure parts of one truth about health and of showing the line: how a reading is
named on every surface (busy, unknown), and the arithmetic of an expected start."""

from __future__ import annotations

import json

import pytest

from sparkjobs.config.sections import ServiceConfig
from sparkjobs.dispatch.health import Probe, Reading, ServerState, busy_when_full
from sparkjobs.dispatch.places import StepPlace, about, expected_wait_s
from sparkjobs.dispatch.status import ServiceStatus, status_of
from sparkjobs.doctor import checks
from sparkjobs.doctor.checks import Status


def reading(state: ServerState, *, busy: bool = False) -> Reading:
    return Reading("orpheus", state, "a detail", 100.0, 140.0, busy)


def test_an_up_reading_marked_busy_is_named_busy_and_still_answers() -> None:
    shown = status_of("orpheus", "spark2", "orpheus", reading(ServerState.UP, busy=True))
    assert (shown.state, shown.ok, shown.known) == ("busy", True, True)
    assert (shown.since, shown.checked, shown.detail) == (100.0, 140.0, "a detail")


@pytest.mark.parametrize(
    ("state", "busy", "named", "ok"),
    [
        (ServerState.UP, False, "up", True),
        (ServerState.OVERLOADED, False, "overloaded", True),
        (ServerState.OVERLOADED, True, "overloaded", True),  # busy only qualifies up
        (ServerState.LOADING, False, "loading", False),
        (ServerState.DOWN, False, "down", False),
    ],
)
def test_each_published_state_is_named_as_dispatch_treats_it(
    state: ServerState, busy: bool, named: str, ok: bool
) -> None:
    shown = status_of("orpheus", "spark2", "orpheus", reading(state, busy=busy))
    assert (shown.state, shown.ok) == (named, ok)
    assert shown.ok == state.reachable


def test_no_reading_is_unknown_and_says_which_node_has_no_worker_publishing() -> None:
    shown = status_of("qwen", "spark1", "ollama", None)
    assert shown == ServiceStatus("qwen", "spark1", "ollama", "unknown",
                                  "no worker publishes readings for spark1")  # fmt: skip
    assert not shown.ok
    assert not shown.known


def test_a_reading_keeps_its_busy_flag_through_json_and_older_readings_are_not_busy() -> None:
    busy = reading(ServerState.UP, busy=True)
    assert Reading.from_json(busy.to_json()) == busy
    older = {k: v for k, v in json.loads(busy.to_json()).items() if k != "busy"}
    assert Reading.from_json(json.dumps(older)).busy is False
    # Dispatch's Lua compares the state alone: a busy reading's state is "up".
    assert json.loads(busy.to_json())["state"] == "up"


def test_a_probe_that_found_every_slot_held_is_busy_and_any_other_is_left_as_it_was() -> None:
    assert busy_when_full(Probe(ServerState.UP), held=1, limit=1) == Probe(
        ServerState.UP, "all 1 slot(s) in use", busy=True
    )
    assert busy_when_full(Probe(ServerState.UP), held=3, limit=8) == Probe(ServerState.UP)
    down = Probe(ServerState.DOWN, "connection refused")
    assert busy_when_full(down, held=1, limit=1) is down
    waited = Probe(ServerState.UP, "the probe waited behind a call in progress", busy=True)
    assert busy_when_full(waited, held=1, limit=1) is waited


def test_doctor_judges_a_busy_server_ok_as_the_health_page_shows_it() -> None:
    spec = ServiceConfig(node="spark2", kind="orpheus", url="http://10.0.0.2:8766")  # type: ignore[arg-type]
    found = checks.service("orpheus", spec, "busy", "the probe waited", published=True)
    assert found.status is Status.OK
    assert found.detail.startswith("busy at ")
    assert "reported by its worker" in found.detail


@pytest.mark.parametrize(
    ("ahead", "limit", "typical_s", "expected"),
    [
        (0, 1, 5.0, 5.0),  # next in line on a serial server: the call in progress
        (2, 1, 5.0, 15.0),  # 3rd: two units ahead, then the one before them
        (9, 1, 4.0, 40.0),
        (15, 8, 2.0, 4.0),  # eight slots share the units ahead
        (3, 1, None, None),  # no recent call: no estimate
    ],
)
def test_the_expected_start_counts_the_units_ahead_at_the_servers_recent_speed(
    ahead: int, limit: int, typical_s: float | None, expected: float | None
) -> None:
    assert expected_wait_s(ahead, limit, typical_s) == expected


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "about 1 s"), (40.4, "about 40 s"), (59.4, "about 59 s"), (150, "about 2 min"),
     (5400, "about 1.5 h")],
)  # fmt: skip
def test_an_expected_start_is_said_roughly(seconds: float, said: str) -> None:
    assert about(seconds) == said


def test_a_step_in_line_says_its_place_and_when_it_is_expected_to_start() -> None:
    place = StepPlace("orpheus", 2, length=5, units=1, expected_start_s=40.2)
    assert place.describe() == "3rd in line for orpheus, expected to start in about 40 s"
    assert place.as_json() == {
        "service": "orpheus", "place": 3, "ahead": 2, "length": 5, "units": 1,
        "expected_start_s": 40.2, "text": place.describe(),
    }  # fmt: skip
    unknown = StepPlace("orpheus", 0, length=1, units=1)
    assert unknown.describe() == "1st in line for orpheus"
    assert unknown.as_json()["expected_start_s"] is None


def test_a_long_speech_says_its_pieces_and_where_its_next_piece_stands() -> None:
    place = StepPlace("orpheus", 1, length=9, units=7, pieces_total=10, pieces_done=3)
    assert place.describe() == "pieces 3/10, next piece 2nd in line for orpheus"
