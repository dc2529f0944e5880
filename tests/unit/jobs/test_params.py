"""A run's parameters: the job's defaults, overridden and converted, always JSON."""

from __future__ import annotations

import math

import pytest

from sparkjobs.errors import BadInput
from sparkjobs.jobs.define import Job, chat
from sparkjobs.runs.params import run_params

SUMMARY = Job("summary", steps=(chat("Summarize {days} days"),), params={"days": 1, "temp": 0.5})


def test_strings_from_the_command_line_take_the_type_of_the_default() -> None:
    merged = run_params(SUMMARY, {"days": "3", "temp": "0.25"})
    assert merged == {"days": 3, "temp": 0.25}


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", math.nan, math.inf])
def test_a_value_that_is_not_finite_is_refused_naming_the_job(value: object) -> None:
    with pytest.raises(BadInput, match=r"parameters of job 'summary' must be JSON values"):
        run_params(SUMMARY, {"temp": value})


def test_an_unknown_parameter_names_the_known_ones() -> None:
    with pytest.raises(BadInput, match=r"unknown parameter 'town'.*known parameters: days, temp"):
        run_params(SUMMARY, {"town": "Oslo"})
