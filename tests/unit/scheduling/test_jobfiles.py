"""Loading job files: good ones load, broken ones are named with file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkjobs.config import Config, load_config
from sparkjobs.jobs.files import load_jobs
from tests.support.cluster import cluster_toml

GOOD = """\
from sparkjobs import chat, cron, job, speak

job(
    "briefing",
    schedule=cron("0 7 * * *", tz="Europe/Berlin"),
    params={"city": "Berlin"},
    steps=[chat("Brief {params.city} on {slot:%A}."), speak("{previous}", voice="tara")],
)
"""

BROKEN = {
    "syntax.py": ('from sparkjobs import job\n\njob("x",\n', "syntax.py:3", "syntax error"),
    "service.py": (
        "from sparkjobs import chat, job\n\njob('s', steps=[chat('hi', service='gemm')])\n",
        "service.py:3",
        "did you mean 'gemma'",
    ),
    "badcron.py": (
        "from sparkjobs import chat, cron, job\n\n"
        "job('c', schedule=cron('0 25 * * *'), steps=[chat('hi')])\n",
        "badcron.py:3",
        "hour '25' is out of range",
    ),
    "badzone.py": (
        "from sparkjobs import chat, cron, job\n\n"
        "job('z', schedule=cron('0 7 * * *', tz='Europe/Berln'), steps=[chat('hi')])\n",
        "badzone.py:3",
        "did you mean Europe/Berlin",
    ),
    "param.py": (
        "from sparkjobs import chat, job\n\njob('p', steps=[chat('hi', temprature=0.2)])\n",
        "param.py:3",
        "chat() has no parameter 'temprature'; did you mean 'temperature'",
    ),
    "jobparam.py": (
        "from sparkjobs import chat, job\n\njob('q', steps=[chat('hi')], schedul=None)\n",
        "jobparam.py:3",
        "job() has no parameter 'schedul'; did you mean 'schedule'",
    ),
    "kind.py": (
        "from sparkjobs import job, speak\n\njob('k', steps=[speak('hi', service='gemma')])\n",
        "kind.py:3",
        "cannot speak; use a service of kind orpheus: orpheus",
    ),
    "voice.py": (
        "from sparkjobs import job, speak\n\njob('v', steps=[speak('hi', voice='tarra')])\n",
        "voice.py:3",
        "unknown voice 'tarra' on service 'orpheus'; did you mean 'tara'",
    ),
    "template.py": (
        "from sparkjobs import chat, job\n\njob('t', steps=[chat('{params.cty}')])\n",
        "template.py:3",
        "uses {params.cty}, but the job's params are: none",
    ),
    "function.py": (
        "from sparkjobs import custom, job\n\n"
        "job('f', steps=[custom('schedules.nowhere:fn', service='gemma')])\n",
        "function.py:3",
        "is not importable",
    ),
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "schedules").mkdir()
    path = tmp_path / "sparkjobs.toml"
    path.write_text(cluster_toml(schedules_dir="schedules", data_dir=str(tmp_path / "data")))
    return load_config(path)


def test_good_files_load_and_each_broken_one_is_explained(config: Config) -> None:
    folder = config.schedules_dir
    (folder / "briefing.py").write_text(GOOD)
    for name, (text, _, _) in BROKEN.items():
        (folder / name).write_text(text)
    loaded = load_jobs(config)
    assert [job.name for job in loaded.jobs] == ["briefing"]
    for name, (_, where, fix) in BROKEN.items():
        (problem,) = loaded.problems[folder / name]
        assert where in problem, problem
        assert fix in problem, problem


def test_a_custom_step_is_importable_by_its_dotted_path(config: Config) -> None:
    (config.schedules_dir / "tools.py").write_text(
        "from sparkjobs import custom, job\n\n"
        "def shout(client, params, previous):\n    return 'HI'\n\n"
        "job('shout', steps=[custom('schedules.tools:shout', service='gemma')])\n"
    )
    loaded = load_jobs(config)
    assert loaded.problems == {}
    assert [job.name for job in loaded.jobs] == ["shout"]


def test_duplicate_names_are_refused_with_both_places(config: Config) -> None:
    text = "from sparkjobs import chat, job\n\njob('same', steps=[chat('hi')])\n"
    (config.schedules_dir / "a.py").write_text(text)
    (config.schedules_dir / "b.py").write_text(text)
    loaded = load_jobs(config)
    assert [job.name for job in loaded.jobs] == ["same"]
    (problem,) = loaded.problems[config.schedules_dir / "b.py"]
    assert "already defined at" in problem
    assert "a.py:3" in problem


def test_reloading_sees_new_contents(config: Config) -> None:
    path = config.schedules_dir / "one.py"
    path.write_text("from sparkjobs import chat, job\n\njob('first', steps=[chat('hi')])\n")
    assert [job.name for job in load_jobs(config).jobs] == ["first"]
    path.write_text("from sparkjobs import chat, job\n\njob('second', steps=[chat('hi')])\n")
    assert [job.name for job in load_jobs(config).jobs] == ["second"]
