"""The public API is exactly what `sparkjobs.__all__` lists, sorted and importable."""

from __future__ import annotations

import types

import sparkjobs


def test_all_is_sorted_and_every_name_exists() -> None:
    assert sparkjobs.__all__ == sorted(sparkjobs.__all__)
    for name in sparkjobs.__all__:
        assert hasattr(sparkjobs, name), name


def test_public_members_are_pinned() -> None:
    public = {
        name
        for name, value in vars(sparkjobs).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules are not API
        and name != "annotations"  # from __future__
    }
    assert public == set(sparkjobs.__all__) - {"__version__"}
