"""Where artifacts are: the SQL rows that say which nodes hold which artifact, and how
to reach a node's artifact server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from sparkjobs.errors import BadInput, UnknownArtifact, UnknownNode
from sparkjobs.store.engine import open_store, reading
from sparkjobs.store.models import Artifact, ArtifactLocation

if TYPE_CHECKING:
    from sparkjobs.config import Config


@dataclass(frozen=True)
class Location:
    node: str
    path: str
    verified_at: datetime


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact's row and the nodes that hold a copy."""

    sha256: str
    size_bytes: int
    media_type: str
    manifest_sha256: str | None
    created_at: datetime
    locations: tuple[Location, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(location.node for location in self.locations)


@dataclass(frozen=True)
class Endpoint:
    """One node's artifact server."""

    node: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def check_sha256(text: str) -> str:
    """`text` as a lowercase sha256 hex digest.

    Raises:
        BadInput: it is not 64 hex digits.
    """
    value = text.strip().lower().removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise BadInput(
            f"{text!r} is not a sha256 (64 hex digits). Fix: copy it from `artifacts ls`"
        )
    return value


def endpoint(config: Config, node: str) -> Endpoint:
    """The artifact server of `node`: its bond address and artifacts port."""
    if node not in config.nodes:
        known = ", ".join(config.nodes) or "none"
        raise UnknownNode(f"unknown node {node!r}; known: {known}")
    return Endpoint(node, str(config.nodes[node].bond_address), config.artifacts_port(node))


@contextmanager
def store_sessions(
    config: Config, given: sessionmaker[Session] | None = None
) -> Iterator[sessionmaker[Session]]:
    """Sessions on the config's database, disposed of afterwards; `given` ones (a
    caller's that it reuses) as they are."""
    if given is not None:
        yield given
        return
    sessions = open_store(config.database)
    try:
        yield sessions
    finally:
        bind = sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()


def _info(artifact: Artifact) -> ArtifactInfo:
    locations = sorted(artifact.locations, key=lambda found: found.verified_at, reverse=True)
    return ArtifactInfo(
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        media_type=artifact.media_type,
        manifest_sha256=artifact.manifest_sha256,
        created_at=artifact.created_at,
        locations=tuple(Location(loc.node, loc.path, loc.verified_at) for loc in locations),
    )


def find(sessions: sessionmaker[Session], sha256: str) -> ArtifactInfo:
    """The artifact's row and its locations, freshest first.

    Raises:
        UnknownArtifact: the store holds no such artifact.
    """
    with reading(sessions) as session:
        artifact = session.scalars(
            select(Artifact)
            .where(Artifact.sha256 == sha256)
            .options(selectinload(Artifact.locations))
        ).one_or_none()
        if artifact is None:
            raise UnknownArtifact(
                f"no artifact {sha256} in the store. Fix: check the sha256 with "
                "`sparkjobs artifacts ls`, or `put` the file first"
            )
        return _info(artifact)


def list_artifacts(
    sessions: sessionmaker[Session], *, node: str | None = None
) -> list[ArtifactInfo]:
    """Every artifact, newest first; only those on `node` when given."""
    with reading(sessions) as session:
        query = select(Artifact).options(selectinload(Artifact.locations))
        if node is not None:
            query = query.where(
                Artifact.sha256.in_(
                    select(ArtifactLocation.sha256).where(ArtifactLocation.node == node)
                )
            )
        artifacts = session.scalars(query.order_by(Artifact.created_at.desc())).all()
        return [_info(artifact) for artifact in artifacts]


def set_manifest_digest(session: Session, sha256: str, digest: str) -> None:
    """Record the manifest digest of an artifact that has none yet (never replace one)."""
    session.execute(
        update(Artifact)
        .where(Artifact.sha256 == sha256, Artifact.manifest_sha256.is_(None))
        .values(manifest_sha256=digest)
    )
