"""The job examples in docs/jobs.md load as job files against the test cluster."""

from __future__ import annotations

import re
from pathlib import Path

from sparkjobs.config import load_config
from sparkjobs.jobs.files import load_jobs
from tests.support.cluster import cluster_toml

DOCS = Path(__file__).parents[3] / "docs" / "jobs.md"
REPO_SCHEDULES = Path(__file__).parents[3] / "schedules"


def test_every_python_example_in_docs_jobs_md_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2
    folder = tmp_path / "schedules"
    folder.mkdir()
    for number, block in enumerate(blocks):
        (folder / ("example.py" if "schedules.example" in block else f"doc{number}.py")).write_text(
            block
        )
    (tmp_path / "c.toml").write_text(cluster_toml(schedules_dir="schedules"))
    loaded = load_jobs(load_config(tmp_path / "c.toml"))
    assert loaded.problems == {}
    assert len(loaded.jobs) == len(blocks)


def test_the_shipped_schedules_load_against_the_default_layout(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(cluster_toml(schedules_dir=str(REPO_SCHEDULES)))
    loaded = load_jobs(load_config(tmp_path / "c.toml"))
    assert loaded.problems == {}
    assert {job.name for job in loaded.jobs} == {
        "hourly-digest",
        "morning-briefing",
        "cloned-greeting",
        "inbox-reader",
    }
