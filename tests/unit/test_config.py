"""The cluster config: defaults, the example, env overrides, and every kind of bad config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparkjobs.cli.main import app
from sparkjobs.config import load_config
from sparkjobs.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "sparkjobs.example.toml"

GOOD = """
[nodes.a]
bond_address = "10.9.0.1"

[nodes.b]
bond_address = "10.9.0.2"

[services.llm]
node = "a"
kind = "openai"
url = "http://10.9.0.1:8002"

[services.tts]
node = "b"
kind = "orpheus"
url = "http://10.9.0.2:8766"

[artifacts]
token = "artifact-secret-123"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sparkjobs.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def test_built_in_default_has_both_nodes_and_all_services_on_loopback() -> None:
    config = load_config()
    assert list(config.nodes) == ["spark1", "spark2"]
    assert {n: s.node for n, s in config.services.items()} == {
        "gemma": "spark1", "qwen": "spark1", "orpheus": "spark2", "clone": "spark2",
    }  # fmt: skip
    assert all(str(s.url.host) == "127.0.0.1" for s in config.services.values())
    assert config.uses_embedded_broker
    assert config.database.startswith("sqlite:///")


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert load_config().data_dir == tmp_path / "sparkjobs"


def test_example_describes_the_two_sparks_of_the_seed() -> None:
    config = load_config(EXAMPLE)
    assert {n: str(s.bond_address) for n, s in config.nodes.items()} == {
        "spark1": "10.0.0.1", "spark2": "10.0.0.2",
    }  # fmt: skip
    endpoints = {
        name: (s.node, s.kind, s.url.host, s.url.port) for name, s in config.services.items()
    }
    assert endpoints == {
        "gemma": ("spark1", "openai", "10.0.0.1", 8002),
        "qwen": ("spark1", "ollama", "10.0.0.1", 11434),
        "orpheus": ("spark2", "orpheus", "10.0.0.2", 8766),
        "clone": ("spark2", "qwen-clone", "10.0.0.2", 8765),
    }
    orpheus = config.services["orpheus"]
    assert orpheus.backend_url is not None
    assert orpheus.backend_url.port == 5006
    assert config.services["qwen"].models == ("qwen2.5:32b",)


def test_environment_overrides_a_nested_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKJOBS_SERVICES__GEMMA__MAX_IN_FLIGHT", "48")
    monkeypatch.setenv("SPARKJOBS_CONFIG", str(EXAMPLE))
    config = load_config()
    assert config.services["gemma"].max_in_flight == 48
    assert config.services["gemma"].url.port == 8002  # the rest of the file still holds


def test_a_bad_value_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPARKJOBS_SERVICES__GEMMA__URL", "not a url")
    with pytest.raises(ConfigError, match="SPARKJOBS_SERVICES__GEMMA__URL"):
        load_config(EXAMPLE)


def test_duplicate_table_is_refused_with_its_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD + '\n[nodes.a]\nbond_address = "10.9.0.3"\n')
    assert "sparkjobs.toml" in message
    assert "line 21" in message
    assert "only once" in message


def test_a_name_used_by_a_node_and_a_service_is_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[services.a]\nnode = "a"\nkind = "ollama"\nurl = "http://10.9.0.1:11434"\n'
    message = error_for(tmp_path, text)
    assert "services.a" in message
    assert "used by a node and by a service" in message


def test_service_on_an_unknown_node_names_the_known_nodes(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD.replace('node = "b"', 'node = "spark9"'))
    assert "services.tts.node = 'spark9'" in message
    assert "line 14" in message
    assert "use one of the nodes defined under [nodes]: a, b" in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('url = "http://10.9.0.1:8002"', 'url = "htp//10.9.0.1:8002"', "services.llm.url"),
        ('bond_address = "10.9.0.2"', 'bond_address = "spark-two"', "nodes.b.bond_address"),
        ('kind = "orpheus"', 'kind = "bark"', "services.tts.kind"),
    ],
)
def test_malformed_values_are_named_with_their_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    message = error_for(tmp_path, GOOD.replace(old, new))
    assert key in message
    assert new.split(" = ")[1].strip('"') in message
    assert "Fix:" in message


def test_two_listeners_on_one_address_and_port_clash(tmp_path: Path) -> None:
    message = error_for(
        tmp_path, GOOD.replace("10.9.0.2:8766", "10.9.0.1:8002").replace('node = "b"', 'node = "a"')
    )
    assert "port 8002 on 10.9.0.1" in message
    assert "services.llm.url" in message


def test_services_on_loopback_of_two_nodes_on_one_machine_clash(tmp_path: Path) -> None:
    text = """
    [nodes.a]
    bond_address = "127.0.0.1"
    artifacts_port = 9001
    [nodes.b]
    bond_address = "127.0.0.1"
    artifacts_port = 9002
    [services.llm]
    node = "a"
    kind = "openai"
    url = "http://127.0.0.1:8002"
    [services.tts]
    node = "b"
    kind = "orpheus"
    url = "http://localhost:8002"
    """
    assert "port 8002 on loopback" in error_for(tmp_path, text)


def test_same_port_on_two_machines_is_fine(tmp_path: Path) -> None:
    text = GOOD.replace("10.9.0.2:8766", "10.9.0.2:8002")
    assert load_config(write(tmp_path, text)).services["tts"].url.port == 8002


@pytest.mark.parametrize("url", ["amqp://guest@localhost//", "sqs://", "memory://"])
def test_broker_schemes_other_than_redis_are_refused(tmp_path: Path, url: str) -> None:
    message = error_for(tmp_path, f'broker_url = "{url}"\n' + GOOD)
    assert "unsupported broker scheme" in message
    assert "redis://HOST:PORT/DB" in message


def test_a_refused_broker_url_does_not_show_its_password(tmp_path: Path) -> None:
    message = error_for(tmp_path, 'broker_url = "amqp://u:hunter2@h//"\n' + GOOD)
    assert "hunter2" not in message


def test_artifact_server_off_loopback_needs_a_token(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD.replace('token = "artifact-secret-123"', ""))
    assert "artifacts.token" in message
    assert "off loopback" in message


@pytest.mark.parametrize(
    ("section", "secret"), [("flower", "flower.basic_auth"), ("web", "web.token")]
)
def test_people_facing_listeners_off_loopback_need_auth(
    tmp_path: Path, section: str, secret: str
) -> None:
    message = error_for(tmp_path, GOOD + f'\n[{section}]\naddress = "192.0.2.10"\n')
    assert f"{section}.address = '192.0.2.10'" in message
    assert secret in message


def test_a_simulator_profile_for_no_service_is_refused(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD + "\n[sim.gemma]\ntime_scale = 10\n")
    assert "[sim.gemma] names no service" in message
    assert "llm, tts" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    message = error_for(
        tmp_path, GOOD.replace('kind = "openai"', 'kind = "openai"\nmax_inflight = 3')
    )
    assert "services.llm.max_inflight" in message
    assert "not a known key" in message


def test_bad_node_name_is_refused(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD.replace("[nodes.b]", "[nodes.Spark_B]"))
    assert "Spark_B" in message
    assert "lowercase" in message


def test_visibility_timeout_below_the_longest_task_is_refused(tmp_path: Path) -> None:
    text = GOOD + "\n[tasks]\ntime_limit_s = 600\nvisibility_timeout_s = 600\n"
    assert "redelivered while its task may still run" in error_for(tmp_path, text)


def test_config_check_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('node = "b"', 'node = "nowhere"'))
    result = CliRunner().invoke(app, ["--config", str(path), "config", "check"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert result.exception.exit_code == 2


def test_config_check_prints_the_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    text = 'broker_url = "redis://:redis-pw-42@10.9.0.1:6379/0"\n' + GOOD
    text += '\n[web]\ntoken = "web-token-77"\n'
    result = CliRunner().invoke(app, ["--config", str(write(tmp_path, text)), "config", "check"])
    assert result.exit_code == 0, result.output
    for secret in ("redis-pw-42", "web-token-77", "artifact-secret-123"):
        assert secret not in result.output
    assert "redis://:***@10.9.0.1:6379/0" in result.output
    assert "max_in_flight = 32" in result.output  # resolved defaults are shown
