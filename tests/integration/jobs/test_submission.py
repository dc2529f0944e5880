"""Durable submission: SQL first, then one message; a slot fires once; bad input queues nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.client import queue_keys
from sparkjobs.errors import BadInput, UnknownService, Unreachable
from sparkjobs.jobs.define import chat, job, speak
from sparkjobs.runs.submit import active_run_exists, submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.models import Status
from sparkjobs.store.queries import get_run
from tests.support.cluster import Cluster, clean_env, cluster_toml
from tests.support.services import Broker, free_port

pytestmark = pytest.mark.redis

BRIEFING = job(
    "briefing",
    params={"city": "Berlin", "days": 1},
    steps=[chat("Weather in {params.city}"), speak("{previous}")],
)


def queued(broker: Broker, node: str) -> int:
    return sum(int(broker.client.llen(k)) for k in queue_keys(broker.prefix, node))


def test_a_run_and_its_steps_are_written_before_one_message_is_queued(
    cluster: Cluster, broker: Broker
) -> None:
    config = cluster.config
    submitted = submit_job(config, BRIEFING, params={"days": "3"}, trigger="submit")
    assert submitted.created
    with store_sessions(config) as sessions, sessions() as session:
        run = get_run(session, submitted.run_id)
    assert run.status == Status.QUEUED
    assert run.params == {"city": "Berlin", "days": 3}
    assert [(s.index, s.service, s.node, s.status) for s in run.steps] == [
        (0, "gemma", "spark1", Status.QUEUED),
        (1, "orpheus", "spark2", Status.QUEUED),
    ]
    assert run.steps[1].spec is not None
    assert run.steps[1].spec["text"] == "{previous}"
    assert (queued(broker, "spark1"), queued(broker, "spark2")) == (1, 0)
    assert active_run_exists(config, "briefing")
    assert not active_run_exists(config, "other")
    waited = wait_for_run(config, submitted.run_id, timeout_s=0.0)
    assert not waited.status.terminal  # no worker: the run waits in its queue


def test_a_second_fire_of_the_same_slot_returns_the_run_and_publishes_nothing(
    cluster: Cluster, broker: Broker
) -> None:
    slot = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    first = submit_job(cluster.config, BRIEFING, trigger="schedule", scheduled_for=slot)
    second = submit_job(cluster.config, BRIEFING, trigger="schedule", scheduled_for=slot)
    assert first.created
    assert not second.created
    assert second.run_id == first.run_id
    assert queued(broker, "spark1") == 1


def test_an_unknown_parameter_is_refused_naming_the_known_ones(
    cluster: Cluster, broker: Broker
) -> None:
    with pytest.raises(BadInput, match=r"unknown parameter 'town'.*known parameters: city, days"):
        submit_job(cluster.config, BRIEFING, params={"town": "Oslo"}, trigger="submit")
    with pytest.raises(BadInput, match="takes a int"):
        submit_job(cluster.config, BRIEFING, params={"days": "many"}, trigger="submit")
    assert list(broker.client.scan_iter(match=f"{broker.prefix}*")) == []


def test_a_step_on_an_unknown_or_wrong_service_is_refused_before_anything_is_written(
    cluster: Cluster, broker: Broker
) -> None:
    with pytest.raises(UnknownService, match="unknown service 'gemm'"):
        submit_job(cluster.config, job("x", steps=[chat("hi", service="gemm")]), trigger="submit")
    with pytest.raises(BadInput, match="needs a service of kind orpheus"):
        submit_job(cluster.config, job("y", steps=[speak("hi", service="gemma")]), trigger="submit")
    assert not active_run_exists(cluster.config, "x")
    assert list(broker.client.scan_iter(match=f"{broker.prefix}*")) == []


def test_an_unreachable_database_is_exit_3_and_nothing_is_published(
    broker: Broker, tmp_path: object
) -> None:
    from pathlib import Path

    from sparkjobs.config import load_config

    path = Path(str(tmp_path)) / "c.toml"
    path.write_text(cluster_toml(
        broker_url=broker.url, broker_key_prefix=broker.prefix,
        database_url=f"postgresql+psycopg://nobody:sekrit@127.0.0.1:{free_port()}/none",
    ))  # fmt: skip
    assert clean_env()  # the config comes from the file alone
    with pytest.raises(Unreachable, match="unreachable") as caught:
        submit_job(load_config(path), BRIEFING, trigger="submit")
    assert caught.value.exit_code == 3
    assert "sekrit" not in str(caught.value)
    assert list(broker.client.scan_iter(match=f"{broker.prefix}*")) == []
