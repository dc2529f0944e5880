"""The systemd units in deploy/systemd pass `systemd-analyze verify` (where it is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UNITS = REPO / "deploy" / "systemd"
INSTALLED_AT = "/opt/sparkjobs/venv/bin/sparkjobs"


def test_every_unit_runs_the_sparkjobs_command_with_the_shared_config() -> None:
    units = sorted(UNITS.glob("*.service"))
    assert {u.name for u in units} == {
        "sparkjobs-beat.service",
        "sparkjobs-flower.service",
        "sparkjobs-web.service",
        "sparkjobs-worker@.service",
    }
    for unit in units:
        text = unit.read_text()
        assert f"ExecStart={INSTALLED_AT} " in text, unit.name
        assert "Environment=SPARKJOBS_CONFIG=/etc/sparkjobs/sparkjobs.toml" in text, unit.name
        assert "Restart=always" in text, unit.name


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: point it at this checkout's command.
    command = Path(sys.executable).with_name("sparkjobs")
    if not command.is_file():
        pytest.skip(f"no installed `sparkjobs` command next to {sys.executable}")
    names = []
    for unit in UNITS.glob("*.service"):
        name = unit.name.replace("@.", "@spark1.")  # verify a template through an instance
        (tmp_path / name).write_text(unit.read_text().replace(INSTALLED_AT, str(command)))
        names.append(f"./{name}")
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(names)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    # verify reports unit problems on stderr, often with exit 0: any line about ours fails.
    about_ours = [line for line in output.splitlines() if "sparkjobs-" in line]
    assert done.returncode == 0, output
    assert about_ours == [], output
