"""Units of work are named from a message's kwargs the same way every time."""

from __future__ import annotations

import uuid

import pytest

from sparkjobs.broker.publish import JOIN_TASK, PIECE_TASK, STEP_TASK
from sparkjobs.broker.units import Unit

RUN = uuid.UUID("6f1444c6-f485-4e22-9092-88854b9cb778")


@pytest.mark.parametrize(
    ("task", "kwargs", "key"),
    [
        (STEP_TASK, {"run_id": str(RUN), "index": 1, "service": "gemma"},
         f"sparkjobs.step:{RUN}:1"),
        (PIECE_TASK, {"run_id": str(RUN), "index": 0, "piece": 3, "service": "orpheus"},
         f"sparkjobs.speak_piece:{RUN}:0:3"),
        (JOIN_TASK, {"run_id": str(RUN), "index": 0, "service": "orpheus"},
         f"sparkjobs.join_audio:{RUN}:0"),
    ],
)  # fmt: skip
def test_each_task_names_its_unit_by_run_step_and_piece(
    task: str, kwargs: dict[str, object], key: str
) -> None:
    unit = Unit.of_task(task, kwargs)
    assert unit is not None
    assert unit.key == key


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        ("sparkjobs.ping", {"node": "spark1"}),
        (STEP_TASK, {"index": 1}),
        (STEP_TASK, {"run_id": "not-a-uuid", "index": 1}),
        (STEP_TASK, None),
        (None, {"run_id": str(RUN), "index": 0}),
    ],
)
def test_other_tasks_and_odd_kwargs_name_no_unit(
    task: str | None, kwargs: dict[str, object] | None
) -> None:
    assert Unit.of_task(task, kwargs) is None
