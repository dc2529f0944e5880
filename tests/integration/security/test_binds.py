"""Nothing people reach listens off loopback without its secret: Flower, the run page
and API, and the artifact server refuse to start (exit 2, naming the key and the fix)
and never bind, whether the address comes from the file or the environment."""

from __future__ import annotations

import socket
import tomllib

import pytest
import tomli_w

from tests.support.cluster import Cluster
from tests.support.tables import merge

pytestmark = pytest.mark.redis


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("command", "section", "secret"),
    [(("flower",), "flower", "flower.basic_auth"), (("web",), "web", "web.token")],
)
def test_flower_and_the_run_page_refuse_an_open_bind_without_auth(
    cluster: Cluster, command: tuple[str, ...], section: str, secret: str
) -> None:
    port = getattr(cluster.config, section).port
    original = cluster.path.read_text()
    cluster.path.write_text(
        tomli_w.dumps(merge(tomllib.loads(original), {section: {"address": "0.0.0.0"}}))
    )
    for argv in (command, ("config", "check")):
        done = cluster.sparkjobs(*argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert f"{section}.address = '0.0.0.0'" in done.stderr
        assert "without authentication" in done.stderr
        assert f"set {secret}" in done.stderr
        assert not listening(port)
    # The same from the environment, over a file that binds to loopback.
    cluster.path.write_text(original)
    cluster.env[f"SPARKJOBS_{section.upper()}__ADDRESS"] = "0.0.0.0"
    done = cluster.sparkjobs(*command)
    assert done.returncode == 2, done.stderr
    assert f"SPARKJOBS_{section.upper()}__ADDRESS" in done.stderr
    assert not listening(port)


def test_an_artifact_server_off_loopback_without_a_token_refuses_to_start(
    cluster: Cluster,
) -> None:
    original = tomllib.loads(cluster.path.read_text())
    port = cluster.config.artifacts_port("spark1")
    cluster.path.write_text(
        tomli_w.dumps(merge(original, {"nodes": {"spark1": {"bond_address": "198.18.0.1"}}}))
    )
    for argv in (("artifacts", "serve", "--node", "spark1"), ("worker", "--node", "spark1")):
        done = cluster.sparkjobs(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert "nodes.spark1.bond_address = '198.18.0.1'" in done.stderr
        assert "set artifacts.token" in done.stderr
        assert not listening(port)
