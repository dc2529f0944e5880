"""Shared test set-up: the two legs, and the rule for services that are missing.

Leg "embedded": a private redis-server (the one `sparkjobs up` would run) and
SQLite. Leg "services": the Redis on 127.0.0.1:6379 and the PostgreSQL on
127.0.0.1:5432. Tests that use a leg fixture run once per leg; choose legs with
SPARKJOBS_TEST_LEGS=embedded,services (the default runs both). A run of the
services leg alone leaves out the tests that do not depend on a leg.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.support.services",
    "tests.support.db",
    "tests.support.sim",
    "tests.support.cluster",
]

LEGS = [leg for leg in os.environ.get("SPARKJOBS_TEST_LEGS", "embedded,services").split(",") if leg]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "leg" in metafunc.fixturenames:
        metafunc.parametrize("leg", LEGS, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "embedded" in LEGS:
        return
    keep = [item for item in items if "leg" in getattr(item, "fixturenames", ())]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
