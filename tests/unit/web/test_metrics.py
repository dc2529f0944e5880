"""sparkjobs' Prometheus metrics: served per node, labelled by node and service only."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from sparkjobs.broker.labels import task_label
from sparkjobs.observe.counters import observe_step
from sparkjobs.observe.metrics import serve
from sparkjobs.store.queries import get_run
from tests.support.services import free_ports


def test_a_worker_serves_its_nodes_metrics_without_secrets(make_client: Callable[..., Any]) -> None:
    one, two = free_ports(2)
    _, store = make_client(
        f"[metrics]\nport = {one}\n[nodes.spark2]\nmetrics_port = {two}\n"
        '[artifacts]\ntoken = "art-secret-2"\n'
    )
    with store.sessions() as session:
        for step in get_run(session, store.speak_run).steps:
            observe_step(step)
            observe_step(step)  # a redelivered task is not counted twice
    server = serve(store.config, "spark2")
    assert server is not None
    try:
        assert server.urls == [f"http://127.0.0.1:{two}/metrics"]
        text = httpx.get(server.urls[0], timeout=10).text
    finally:
        server.stop()
    assert 'sparkjobs_runs{status="failed"} 1.0' in text
    assert 'sparkjobs_steps{node="spark2",service="orpheus",status="succeeded"} 1.0' in text
    assert 'sparkjobs_in_flight_limit{node="spark2",service="orpheus"} 1.0' in text
    assert 'sparkjobs_in_flight{node="spark2",service="clone"} 0.0' in text
    assert (
        'sparkjobs_steps_finished_total{kind="speak",node="spark2",service="orpheus",'
        'status="succeeded"} 1.0' in text
    )
    assert 'sparkjobs_step_latency_seconds_count{kind="chat",node="spark1",service="gemma"}' in text
    assert "art-secret-2" not in text
    assert "redis://" not in text


def test_metrics_are_off_without_a_port(make_client: Callable[..., Any]) -> None:
    _, store = make_client()
    assert serve(store.config, "spark1") is None


def test_flower_sees_the_job_step_service_and_node_of_each_task(
    make_client: Callable[..., Any],
) -> None:
    from sparkjobs.broker.app import create_app

    _, store = make_client()
    app = create_app(store.config)
    assert task_label(app, store.speak_run, 1, "orpheus") == (
        f"morning-briefing · step 2/2 speak on orpheus@spark2 · run {store.speak_run}"
    )
    assert task_label(app, store.speak_run, 1, "orpheus", part="piece 3").startswith(
        "morning-briefing · step 2/2 speak piece 3 on orpheus@spark2"
    )
    unknown = uuid.uuid4()
    assert (
        task_label(app, unknown, 0, "gemma") == f"? · step 1 step on gemma@spark1 · run {unknown}"
    )
