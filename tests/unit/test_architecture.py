"""docs/architecture.md stays the map: every module it names exists, every module of a
package is named, and the functions of the end-to-end path resolve."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
# The table of packages: "| `config/` | `model` (...), `sections` and `values` ... |".
ROWS = re.findall(r"^\| `(\w+)/`[^|]* \| (.+) \|$", PAGE, re.M)
# Module-qualified names in the page's prose, e.g. `runs.submit.submit_job`.
PACKAGES = "|".join(
    ["workers", *(p.parent.name for p in (ROOT / "sparkjobs").glob("*/__init__.py"))]
)
DOTTED = sorted(set(re.findall(rf"`((?:{PACKAGES})(?:\.[A-Za-z_]\w*)+)`", PAGE)))
# The top of each layer drawing line: " cli ", " web | doctor ", ...
LAYERS = re.findall(r"^ ([a-z_]+(?: \| [a-z_]+)*)\s{2,}", PAGE, re.M)


def _modules(package: str) -> set[str]:
    folder = ROOT / ("workers" if package == "workers" else f"sparkjobs/{package}")
    return {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}


def _named(cell: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", cell))


def test_the_page_has_a_row_for_every_package() -> None:
    packages = {path.parent.name for path in (ROOT / "sparkjobs").glob("*/__init__.py")}
    in_table = {name for name, _ in ROWS}
    assert packages <= in_table, (
        f"packages missing from docs/architecture.md: {packages - in_table}"
    )


@pytest.mark.parametrize(("package", "cell"), ROWS, ids=[name for name, _ in ROWS])
def test_a_package_row_names_exactly_its_modules(package: str, cell: str) -> None:
    named, found = _named(cell), _modules(package)
    assert named <= found, f"{package}/: the page names modules that do not exist: {named - found}"
    assert found <= named, f"{package}/: modules the page does not name: {found - named}"


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_name_on_the_path_resolves(dotted: str) -> None:
    parts = dotted.split(".")
    root = "workers" if parts[0] == "workers" else "sparkjobs"
    parts = parts[1:] if parts[0] == "workers" else parts
    for split in range(len(parts), 0, -1):
        module_name = ".".join([root, *parts[:split]])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            assert hasattr(target, attribute), f"{dotted}: {module_name} has no {attribute}"
            target = getattr(target, attribute)
        return
    pytest.fail(f"{dotted}: no such module")


def test_the_drawn_layers_are_the_layers_lint_checks() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    contract = pyproject.split('name = "The layers of sparkjobs"')[1].split("]")[0]
    checked = [
        " | ".join(part.strip().removeprefix("sparkjobs.") for part in line.split("|"))
        for line in re.findall(r'"([^"]+)"', contract)
        if line not in ("layers", "migrations")  # the type; migrations is drawn apart
    ]
    assert checked == LAYERS
