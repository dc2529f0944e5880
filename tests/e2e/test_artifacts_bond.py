"""Two-node proof on the bondnet test bed: one flow rides one link, parallel streams use both.

A server runs in one namespace (spark1), fetches run in the other (spark2), over two
rate-limited links hashed on layer 3+4. The assertions read the links' byte counters
(`bondnet links`), never the clock.

The test bed's multipath hash is seeded at random, so which link a flow takes cannot
be chosen (the fetcher's port choice targets a real bond's formula). The test asks the
test bed's routing table which link carries each flow the fetch opened, checks the
counters against that, and fetches again in the rare case that every flow landed on
one link (1 in 128 with 8 flows), so it never depends on luck.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparkjobs.artifacts.register import node_root, register_file
from sparkjobs.artifacts.server import READY_LINE
from sparkjobs.store.engine import open_store
from sparkjobs.store.schema import upgrade

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BONDNET = REPO.parent / "shared" / "testbed" / "bondnet"
SIZE_BYTES = 48 << 20
RATE = "200mbit"
SERVER_ADDRESS, CLIENT_ADDRESS = "198.18.0.1", "198.18.0.2"
LINK_DEVICES = {"bond1a": "link1", "bond2a": "link2"}
# Each fetch leaves every flow on one link with probability 2**-7; 4 tries: 2**-28.
ATTEMPTS = 4
TOKEN = secrets.token_hex(16)

SERVE = """
import sys
from sparkjobs.config import load_config
from sparkjobs.artifacts.server import run_server
run_server(load_config(sys.argv[1]), "spark1")
"""
GET = """
import json, sys
from sparkjobs.config import load_config
from sparkjobs.artifacts.ensure import get_artifact
got = get_artifact(load_config(sys.argv[1]), sys.argv[2], __import__("pathlib").Path(sys.argv[3]),
                   streams=int(sys.argv[4]))
print(json.dumps({"streams": got.streams, "bytes": got.bytes_received,
                  "local_ports": list(got.local_ports)}))
"""


@dataclass
class Bed:
    prefix: str
    config: Path
    env: dict[str, str]

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(BONDNET), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, f"bondnet {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def links(self) -> dict[str, int]:
        """Bytes sent by spark1 (the server) on each link."""
        counters = {}
        for line in self.run("links").splitlines():
            node, link, _, value = line.split()
            if node == "spark1":
                counters[link] = int(value)
        return counters

    def exec_python(self, node: str, code: str, *args: str) -> list[str]:
        return [str(BONDNET), "exec", node, sys.executable, "-c", code, *args]

    def data_link(self, server_port: int, client_port: int) -> str:
        """The link spark1's routing sends a flow's data on (its seeded multipath hash)."""
        route = self.run(
            "exec", "spark1", "ip", "route", "get", CLIENT_ADDRESS, "from", SERVER_ADDRESS,
            "ipproto", "tcp", "sport", str(server_port), "dport", str(client_port),
        )  # fmt: skip
        links = [link for device, link in LINK_DEVICES.items() if f"dev {device} " in route]
        assert len(links) == 1, route
        return links[0]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the bondnet test bed needs root and iproute2")
    if not BONDNET.is_file():
        pytest.skip(f"no test bed at {BONDNET}")
    data = tmp_path / "data"
    config = tmp_path / "sparkjobs.toml"
    config.write_text(
        f'data_dir = "{data}"\n'
        f'database_url = "sqlite:///{tmp_path / "sj.db"}"\n'
        '[nodes.spark1]\nbond_address = "198.18.0.1"\n'
        '[nodes.spark2]\nbond_address = "198.18.0.2"\n'
        f'[artifacts]\ntoken = "{TOKEN}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKJOBS_")}
    env["PYTHONPATH"] = str(REPO)
    prefix = f"sja{secrets.token_hex(3)}-"
    env["BONDNET_PREFIX"] = prefix
    bed = Bed(prefix, config, env)
    try:
        bed.run("up", "--rate", RATE)
        yield bed
    finally:
        bed.run("down")


@dataclass
class Served:
    sha256: str
    port: int


@pytest.fixture
def served(bed: Bed, tmp_path: Path) -> Iterator[Served]:
    """A 48 MiB artifact registered on spark1, and spark1's server running in its namespace."""
    from sparkjobs.artifacts.locate import endpoint
    from sparkjobs.config import load_config

    config = load_config(bed.config)
    upgrade(config.database)
    content = random.Random(7).randbytes(SIZE_BYTES)
    sessions = open_store(config.database)
    sha256 = register_file(sessions, node_root(config, "spark1"), "spark1", content).sha256
    log = tmp_path / "server.log"
    with log.open("wb") as errors:
        server = subprocess.Popen(
            bed.exec_python("spark1", SERVE, str(bed.config)),
            env=bed.env, stdout=subprocess.PIPE, stderr=errors, text=True,
        )  # fmt: skip
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        assert line.startswith(READY_LINE), f"no server: {line!r}\n{log.read_text()}"
        yield Served(sha256, endpoint(config, "spark1").port)
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


@dataclass
class Fetch:
    sent: dict[str, int]  # bytes spark1 sent on each link during the fetch
    local_ports: list[int]


def fetch(bed: Bed, sha256: str, out: Path, streams: int) -> Fetch:
    before = bed.links()
    done = subprocess.run(
        bed.exec_python("spark2", GET, str(bed.config), sha256, str(out), str(streams)),
        env=bed.env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["streams"] == streams
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha256
    after = bed.links()
    return Fetch({link: after[link] - before[link] for link in after}, answer["local_ports"])


def test_one_stream_rides_one_link_and_parallel_streams_use_both(
    bed: Bed, served: Served, tmp_path: Path
) -> None:
    single = fetch(bed, served.sha256, tmp_path / "single.bin", streams=1)
    assert sum(single.sent.values()) >= SIZE_BYTES
    assert len(single.local_ports) == 1
    (link,) = {bed.data_link(served.port, port) for port in single.local_ports}
    assert single.sent[link] >= 0.95 * sum(single.sent.values()), (link, single.sent)

    for _ in range(ATTEMPTS):
        parallel = fetch(bed, served.sha256, tmp_path / "parallel.bin", streams=8)
        # (a stream that found no chunk left never connects)
        assert 2 <= len(parallel.local_ports) <= 8, parallel.local_ports
        routed = {bed.data_link(served.port, port) for port in parallel.local_ports}
        if routed == set(LINK_DEVICES.values()):
            break
        # Every flow hashed onto one link: that link carried it all; try new ports.
        assert parallel.sent[routed.pop()] >= 0.95 * sum(parallel.sent.values())
    else:
        pytest.fail(f"every flow hashed onto one link in {ATTEMPTS} fetches")
    assert sum(parallel.sent.values()) >= SIZE_BYTES
    # The streams share one queue of chunks, so a link with fewer flows still stays
    # busy: each link carries a substantial share, whatever the split of flows.
    assert min(parallel.sent.values()) >= 0.25 * sum(parallel.sent.values()), parallel.sent
