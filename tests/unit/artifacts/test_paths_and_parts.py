"""Small pieces: sha256 input, store paths that cannot escape, resume files, components."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkjobs.artifacts.fetch import partial_paths
from sparkjobs.artifacts.locate import check_sha256, endpoint
from sparkjobs.artifacts.server import make_app, safe_blob_path
from sparkjobs.config import Config
from sparkjobs.errors import BadInput, ConfigError, UnknownNode
from sparkjobs.store.artifacts import artifact_path

SHA = "ab" * 32


def config(tmp_path: Path, **artifacts: object) -> Config:
    return Config(
        data_dir=tmp_path,
        nodes={
            "spark1": {"bond_address": "127.0.0.1", "artifacts_port": 9001},
            "spark2": {"bond_address": "127.0.0.1"},
        },
        artifacts=artifacts,
    )


def test_a_sha256_is_taken_in_any_case_with_or_without_its_prefix() -> None:
    assert check_sha256(f"sha256:{SHA.upper()}") == SHA
    for bad in ("", "abc", SHA + "0", "../" + SHA[3:], "g" * 64):
        with pytest.raises(BadInput):
            check_sha256(bad)


def test_a_node_is_reached_on_its_bond_address_and_its_own_port(tmp_path: Path) -> None:
    found = config(tmp_path, port=9100)
    assert endpoint(found, "spark1").url == "http://127.0.0.1:9001"
    assert endpoint(found, "spark2").url == "http://127.0.0.1:9100"
    with pytest.raises(UnknownNode, match="spark1, spark2"):
        endpoint(found, "spark9")


def test_only_regular_files_inside_the_store_are_servable(tmp_path: Path) -> None:
    root = tmp_path / "store"
    real = artifact_path(root, SHA)
    real.parent.mkdir(parents=True)
    real.write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    linked = artifact_path(root, "cd" * 32)
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside)

    assert safe_blob_path(root, SHA) == real
    assert safe_blob_path(root, "cd" * 32) is None
    assert safe_blob_path(root, "ef" * 32) is None
    assert safe_blob_path(root, "../outside") is None


def test_a_fetch_keeps_its_partial_hidden_next_to_the_file_or_in_the_store(
    tmp_path: Path,
) -> None:
    partial, sidecar = partial_paths(tmp_path / "voice.wav", SHA)
    assert partial.name.startswith(".voice.wav.")
    assert sidecar.name == partial.name + ".json"
    inside, _ = partial_paths(tmp_path / "x", SHA, tmp_path / ".partial")
    assert inside == tmp_path / ".partial" / f"{SHA}.fetch"


def test_serving_off_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    found = Config(data_dir=tmp_path, nodes={"a": {"bond_address": "127.0.0.1"}})
    make_app(found, "a")
    open_lan = found.model_copy(
        update={"nodes": {"a": found.nodes["a"].model_copy(update={"lan_address": "198.18.0.9"})}}
    )
    with pytest.raises(ConfigError, match="token"):
        make_app(open_lan, "a")
