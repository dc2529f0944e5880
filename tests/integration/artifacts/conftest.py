"""Three nodes on loopback, each with a real artifact server, sharing one migrated store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.artifacts.register import Registered, node_root, register_file
from sparkjobs.artifacts.server import ServerThread
from sparkjobs.config import Config
from sparkjobs.store.engine import make_engine, session_factory
from sparkjobs.store.schema import upgrade
from tests.support.services import free_ports

TOKEN = "test-token-of-the-artifact-servers"
NODES = ("spark1", "spark2", "spark3")


@dataclass
class Nodes:
    """The cluster as clients see it, and handles to its servers."""

    config: Config
    sessions: sessionmaker[Session]
    servers: dict[str, ServerThread]

    def register(self, node: str, content: bytes) -> Registered:
        return register_file(self.sessions, node_root(self.config, node), node, content)

    def stop(self, node: str) -> None:
        self.servers.pop(node).stop()


def two_node_config(
    tmp_path: Path, database_url: str, ports: dict[str, int], token: str | None = TOKEN
) -> Config:
    nodes = {
        name: {"bond_address": "127.0.0.1", "artifacts_port": port} for name, port in ports.items()
    }
    return Config(
        data_dir=tmp_path / "data",
        database_url=database_url,
        nodes=nodes,
        artifacts={"token": token},
    )


@pytest.fixture
def nodes(tmp_path: Path, database_url: str) -> Iterator[Nodes]:
    """spark1, spark2 and spark3 serving on free loopback ports, with the token required."""
    upgrade(database_url)
    config = two_node_config(
        tmp_path, database_url, dict(zip(NODES, free_ports(len(NODES)), strict=True))
    )
    servers = {name: ServerThread(config, name).start() for name in NODES}
    engine = make_engine(database_url)
    try:
        yield Nodes(config, session_factory(engine), servers)
    finally:
        for server in servers.values():
            server.stop()
        engine.dispose()


@pytest.fixture
def payload() -> Callable[[int], bytes]:
    """Deterministic bytes of a given size (distinct per size)."""

    def make(size: int) -> bytes:
        import random

        return random.Random(size).randbytes(size)

    return make
