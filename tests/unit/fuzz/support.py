"""What the fuzz tests share: derandomized settings (the same examples on every run,
no example database on disk, no deadline because the first call imports a lot) and
a config file on loopback whose broker and database do not exist."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support.cluster import cluster_toml

# Hypothesis keeps caches even without an example database: outside the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "sparkjobs-hypothesis")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values of every type TOML can hold, nested a little.
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "http://127.0.0.1:1", "spark1", "", "-1"]),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def unreachable_config(tmp_path: Path, **top: str) -> Path:
    """The test cluster's config, its broker on a closed port and its database absent."""
    path = tmp_path / "fuzz.toml"
    path.write_text(
        cluster_toml(
            broker_url="redis://127.0.0.1:1/0",
            database_url=f"sqlite:///{tmp_path / 'absent' / 'db.sqlite'}",
            data_dir=str(tmp_path / "data"),
            **top,
        )
    )
    return path
