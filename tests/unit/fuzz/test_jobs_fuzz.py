"""The job-definition API never crashes: any arguments a job file may pass to `job`,
the steps and the schedules either describe a job (that `check_job` then accepts or
explains) or raise a SparkjobsError that names the file and line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sparkjobs.config import Config, load_config
from sparkjobs.errors import SparkjobsError
from sparkjobs.jobs import define as jobs
from sparkjobs.jobs.check import check_job
from tests.unit.fuzz.support import FUZZ, unreachable_config

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
TEMPLATES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "{",
            "}",
            "{slot:%A}",
            "{slot:%",
            "{params.city}",
            "{params}",
            "{previous}",
            "{outputs[0]}",
            "{outputs[99]}",
            "{params.city!r:>{x}}",
            "{0}",
            "{}",
            "{params.city.__class__}",
            "{slot.year:d}",
            "{slot:{slot}}",
        ]
    ),
)
SERVICES = st.one_of(st.none(), st.sampled_from(["gemma", "qwen", "orpheus", "clone", "nope"]))


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of the right type four times in five, anything at all otherwise."""
    return st.one_of(valid, valid, valid, valid, ANY)


NUMBERS = mostly(st.none() | st.integers(min_value=1, max_value=10**6))


def step_of(build: Any) -> Any:
    """A step built through the API (None when the API refused it, as it may)."""
    return lambda *args, **kwargs: define(build, *args, **kwargs)


STEP = st.one_of(
    st.builds(
        step_of(jobs.chat),
        TEMPLATES,
        service=SERVICES,
        model=mostly(st.none() | st.text(max_size=9)),
        system=st.one_of(st.none(), TEMPLATES),
        max_tokens=NUMBERS,
        temperature=NUMBERS,
    ),
    st.builds(
        step_of(jobs.speak),
        mostly(TEMPLATES),
        service=SERVICES,
        voice=mostly(st.none() | st.sampled_from(["tara", "Tara"])),
    ),
    st.builds(
        step_of(jobs.clone), TEMPLATES, ref_audio=mostly(st.text(max_size=70)), service=SERVICES
    ),
    st.builds(
        step_of(jobs.custom), st.text(max_size=30), service=st.sampled_from(["gemma", "nope"])
    ),
).filter(lambda step: step is not None)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(unreachable_config(tmp_path_factory.mktemp("jobs")))


def define(build: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the API; a SparkjobsError must name where (file:line) and say something."""
    try:
        return build(*args, **kwargs)
    except SparkjobsError as exc:
        refusal = str(exc)
    assert Path(__file__).name in refusal, refusal
    return None


def checked(config: Config, job: jobs.Job | None) -> None:
    if job is None:
        return
    problems = check_job(config, job)
    assert all(isinstance(p, str) and p for p in problems)


JOB_ARGUMENTS = {
    "name": st.text(max_size=30) | st.sampled_from(["morning-briefing", "a.b_c"]),
    "steps": st.lists(STEP, min_size=1, max_size=3) | STEP,
    "schedule": st.none()
    | st.builds(jobs.cron, st.text(max_size=30), tz=st.text(max_size=20))
    | st.sampled_from(
        [
            jobs.cron("0 7 * * *", tz="Europe/Berlin"),
            jobs.cron("*/0 * * * *"),
            jobs.cron("0 7 * * *", tz="Mars/Base"),
            jobs.cron("61 25 32 13 8"),
        ]
    ),
    "params": st.none() | st.dictionaries(st.sampled_from(["city", "x"]), ANY, max_size=2),
    "misfire": st.sampled_from(["skip", "run_once"]),
    "overlap": st.sampled_from(["skip", "queue"]),
    "grace": st.timedeltas(min_value=timedelta(0)),
    "paused": st.booleans(),
    "description": st.text(max_size=10),
}


@FUZZ
@given(
    arguments=st.fixed_dictionaries(JOB_ARGUMENTS),
    wrong=st.none() | st.sampled_from(sorted(JOB_ARGUMENTS)),
    anything=ANY | st.dictionaries(st.integers() | st.text(max_size=3), ANY, max_size=2),
)
def test_any_job_call_defines_a_job_or_explains_why_not(
    config: Config, arguments: dict[str, Any], wrong: str | None, anything: Any
) -> None:
    if wrong is not None:  # one argument of any type at all
        arguments[wrong] = anything
    name = arguments.pop("name")
    job = define(jobs.job, name, **arguments)
    event("defined" if job is not None else "refused")
    if job is not None:
        event("accepted by check_job" if not check_job(config, job) else "explained by check_job")
    checked(config, job)


@FUZZ
@given(
    hours=st.one_of(st.floats(), st.integers()),
    minutes=st.one_of(st.floats(), st.integers(min_value=-(10**12), max_value=10**12)),
    seconds=st.floats(),
    interval=st.one_of(st.none(), st.timedeltas(), ANY),
)
def test_any_interval_is_a_schedule_or_a_job_definition_error(
    config: Config, hours: float, minutes: float, seconds: float, interval: Any
) -> None:
    schedule = define(jobs.every, hours=hours, minutes=minutes, seconds=seconds, interval=interval)
    if schedule is not None:
        assert schedule.interval > timedelta(0)
        checked(config, define(jobs.job, "every-job", steps=jobs.chat("Hi"), schedule=schedule))


@FUZZ
@given(expression=st.text(max_size=40), tz=st.one_of(st.text(max_size=30), ANY))
def test_any_cron_expression_is_checked_not_crashed_on(
    config: Config, expression: str, tz: Any
) -> None:
    schedule = define(jobs.cron, expression, tz=tz)
    checked(config, define(jobs.job, "cron-job", steps=jobs.chat("Hi"), schedule=schedule))


def test_the_fuzzed_file_is_named_in_errors(tmp_path: Path) -> None:
    with pytest.raises(SparkjobsError, match=r"test_jobs_fuzz\.py:"):
        jobs.job("x", steps=[])
