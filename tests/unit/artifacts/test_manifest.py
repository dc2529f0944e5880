"""Chunk manifests: sizes, one-pass digests, canonical form, and refusing a forged one."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from sparkjobs.artifacts.manifest import (
    Manifest,
    ManifestBuilder,
    build_manifest,
    chunk_bytes_for,
    chunk_digest,
    read_manifest,
    write_manifest,
)
from sparkjobs.errors import CorruptArtifact

MiB = 1 << 20


@pytest.mark.parametrize(
    ("size", "chunk"),
    [
        (0, MiB),
        (1, MiB),
        (64 * MiB, MiB),
        (64 * MiB + 1, 2 * MiB),
        (1 << 30, 16 * MiB),
        (70 << 30, 64 * MiB),
    ],
)
def test_chunks_are_about_sixty_four_per_file_between_one_and_sixty_four_mib(
    size: int, chunk: int
) -> None:
    assert chunk_bytes_for(size) == chunk


def test_a_file_fed_in_odd_pieces_gets_the_same_manifest_as_one_read(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * MiB + 777)
    path = tmp_path / "blob"
    path.write_bytes(data)
    builder = ManifestBuilder(len(data))
    cut = random.Random(2)
    position = 0
    while position < len(data):
        step = cut.randint(1, 300_000)
        builder.update(data[position : position + step])
        position += step

    manifest = builder.finish()

    assert manifest == build_manifest(path)
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.chunk_count == 4
    offset, length = manifest.chunk_span(3)
    assert (offset, length) == (3 * MiB, 777)
    assert manifest.digests[3] == chunk_digest(manifest.algo, data[offset:])


def test_an_empty_file_has_no_chunks() -> None:
    manifest = ManifestBuilder(0).finish()
    assert manifest.chunk_count == 0
    assert manifest.sha256 == hashlib.sha256(b"").hexdigest()


def test_the_encoding_is_canonical_and_round_trips_against_its_digest(tmp_path: Path) -> None:
    builder = ManifestBuilder(10)
    builder.update(b"0123456789")
    manifest = builder.finish()

    again = Manifest.from_json(
        manifest.to_json(), sha256=manifest.sha256, expected_digest=manifest.digest()
    )

    assert again == manifest
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path, manifest.sha256) == manifest
    assert read_manifest(tmp_path, "f" * 64) is None


@pytest.mark.parametrize(
    "forge",
    [
        lambda m: m.replace(b'"digests":["', b'"digests":["f'),
        lambda m: m.replace(b'"size_bytes":10', b'"size_bytes":11'),
        lambda m: m + b" ",
    ],
)
def test_a_manifest_that_differs_from_the_recorded_digest_is_refused(forge: object) -> None:
    builder = ManifestBuilder(10)
    builder.update(b"0123456789")
    manifest = builder.finish()
    forged = forge(manifest.to_json())  # type: ignore[operator]

    with pytest.raises(CorruptArtifact, match="does not match"):
        Manifest.from_json(forged, sha256=manifest.sha256, expected_digest=manifest.digest())


def test_an_unrecorded_manifest_must_still_describe_the_asked_artifact() -> None:
    builder = ManifestBuilder(10)
    builder.update(b"0123456789")
    manifest = builder.finish()
    with pytest.raises(CorruptArtifact, match="another file"):
        Manifest.from_json(manifest.to_json(), sha256="a" * 64, expected_digest=None)
    with pytest.raises(CorruptArtifact, match="malformed"):
        Manifest.from_json(b"{}", sha256="a" * 64, expected_digest=None)
