"""The wheel, installed on a node with no checkout, carries the migrations: `db upgrade` works."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# What a build of the wheel reads: the project file, the readme its metadata names, and
# the trees of the packages. Each tree lands in the wheel under its package's path.
PROJECT_FILES = ("pyproject.toml", "README.md")
TREES = {"sparkjobs": "sparkjobs", "workers": "workers", "migrations": "sparkjobs/migrations"}
BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")
TIMEOUT_S = 180  # a hang guard: a build or an install takes a few seconds
# Variables that would put the checkout, or another environment, on the path of the
# installed sparkjobs; SPARKJOBS_ ones would override the test's config.
FOREIGN = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
# Where the installed interpreter finds sparkjobs, and what its sys.path holds.
PROBE = """\
import json, sys
import sparkjobs, sparkjobs.migrations
print(json.dumps({
    "path": sys.path,
    "sparkjobs": sparkjobs.__file__,
    "sparkjobs.migrations": sparkjobs.migrations.__file__,
}))
"""


@dataclass(frozen=True)
class Built:
    wheel: Path
    source: Path  # the copy of the checkout it was built from


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel of a copy of the checkout's project files and package trees.

    A copy, because building in place writes build/ and *.egg-info into the checkout
    that other processes share, and setuptools' build/lib keeps the files of earlier
    builds, which the wheel would carry too.
    """
    source = tmp_path_factory.mktemp("source")
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, source / name)
    for tree in TREES:
        shutil.copytree(REPO / tree, source / tree, ignore=BYTECODE)
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "-w", str(out), str(source)],
        cwd=out,
    )  # fmt: skip
    (wheel,) = out.glob("sparkjobs-*.whl")
    return Built(wheel, source)


def test_the_wheel_carries_every_module_and_data_file_of_the_checkout(built: Built) -> None:
    expected = {
        f"{into}/{path.relative_to(built.source / tree).as_posix()}"
        for tree, into in TREES.items()
        for path in (built.source / tree).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(built.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if ".dist-info/" not in name}
    assert sorted(expected - shipped) == [], "missing from the wheel (pyproject.toml)"
    assert sorted(shipped - expected) == [], "in the wheel but not in the checkout"


def test_a_wheel_installed_outside_the_checkout_upgrades_a_sqlite_store(
    built: Built, tmp_path: Path
) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", "--quiet", str(built.wheel)],
        cwd=tmp_path,
    )  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k not in FOREIGN and not k.startswith("SPARKJOBS_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The dependencies come from this test's environment, listed after the venv's own
    # site-packages: a directory named in a .pth file joins sys.path as it is, its own
    # .pth files (such as an editable install's finder of the checkout) are not run.
    own = Path(_run([str(python), "-c", PURELIB], cwd=tmp_path, env=env).stdout.strip())
    (own / "zz_sparkjobs_test_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in site.getsitepackages())
    )
    probe = json.loads(_run([str(python), "-c", PROBE], cwd=tmp_path, env=env).stdout)
    on_path = {Path(entry or tmp_path).resolve() for entry in probe["path"]}
    assert REPO not in on_path, "the checkout is on the installed sparkjobs' path"
    for module in ("sparkjobs", "sparkjobs.migrations"):
        found = Path(probe[module]).resolve()
        assert found.is_relative_to(own.resolve()), f"{module} was imported from {found}"
        assert not found.is_relative_to(REPO), f"{module} was imported from the checkout"

    config = tmp_path / "sparkjobs.toml"
    store = tmp_path / "store" / "sparkjobs.db"  # its folder does not exist yet
    config.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "database_url": f"sqlite:///{store}",
                "nodes": {"n1": {"bond_address": "127.0.0.1"}},
            }
        )
    )
    upgraded = _run(
        [str(venv / "bin" / "sparkjobs"), "db", "upgrade"],
        cwd=tmp_path,
        env={**env, "SPARKJOBS_CONFIG": str(config)},
    )
    head = _newest_revision()
    assert f"upgraded from empty to revision {head}" in upgraded.stdout
    with sqlite3.connect(store) as connection:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert rows == [(head,)]


def _newest_revision() -> str:
    """The revision of the checkout's newest migration file (they are numbered)."""
    newest = sorted((REPO / "migrations" / "versions").glob("[0-9]*.py"))[-1]
    found = re.search(r'^revision: str = "([^"]+)"$', newest.read_text(), re.MULTILINE)
    assert found, f"no revision in {newest.name}"
    return found.group(1)


def _run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command`; fail the test with its output unless it exits 0."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{command[0]} {' '.join(command[1:3])} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result
