"""The Celery app built from the config: the safety settings every process shares."""

from __future__ import annotations

from sparkjobs.broker.app import create_app
from sparkjobs.config import load_config
from sparkjobs.worker.process import worker_concurrency

CONFIG = load_config()


def test_only_json_is_accepted_and_produced() -> None:
    conf = create_app(CONFIG).conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.event_serializer == "json"
    assert conf.result_accept_content == ["json"]


def test_work_is_acknowledged_late_and_prefetched_one_at_a_time() -> None:
    conf = create_app(CONFIG).conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_backend is None


def test_visibility_timeout_exceeds_the_longest_task_plus_retry_delay() -> None:
    conf = create_app(CONFIG).conf
    floor = CONFIG.tasks.time_limit_s + CONFIG.tasks.max_retry_delay_s
    assert conf.broker_transport_options["visibility_timeout"] > floor


def test_queues_are_explicit_one_per_node_and_never_created_on_the_fly() -> None:
    conf = create_app(CONFIG).conf
    assert [queue.name for queue in conf.task_queues] == ["spark1", "spark2"]
    assert conf.task_create_missing_queues is False


def test_daemons_retry_the_broker_forever_and_clients_give_up_fast() -> None:
    daemon = create_app(CONFIG, role="daemon").conf
    client = create_app(CONFIG, role="client").conf
    assert daemon.broker_connection_max_retries is None
    assert daemon.broker_connection_retry_on_startup is True
    assert client.broker_connection_max_retries == 1
    assert client.broker_transport_options["socket_connect_timeout"] <= 2


def test_worker_pool_is_sized_from_the_node_services_limits() -> None:
    # spark1 hosts gemma (32) and qwen (1); spark2 orpheus (1) and clone (1); +4 each
    assert worker_concurrency(CONFIG, "spark1") == 37
    assert worker_concurrency(CONFIG, "spark2") == 6


def test_task_events_are_off_until_asked_unless_configured_always() -> None:
    on_demand = create_app(CONFIG).conf
    assert on_demand.worker_send_task_events is False
    assert on_demand.task_send_sent_event is False
    always = CONFIG.model_copy(
        update={"worker": CONFIG.worker.model_copy(update={"task_events": "always"})}
    )
    assert create_app(always).conf.worker_send_task_events is True
    assert create_app(always).conf.task_send_sent_event is True
