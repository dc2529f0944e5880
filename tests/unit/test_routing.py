"""Routing by service: service -> node -> that node's queue, decided before anything is sent."""

from __future__ import annotations

import pytest

from sparkjobs.broker.app import create_app
from sparkjobs.config import load_config
from sparkjobs.config.routing import ServiceRouter, default_service, queue_for_service
from sparkjobs.errors import UnknownNode, UnknownService

CONFIG = load_config()


@pytest.mark.parametrize(
    ("service", "queue"),
    [("gemma", "spark1"), ("qwen", "spark1"), ("orpheus", "spark2"), ("clone", "spark2")],
)
def test_each_service_lands_on_the_queue_of_its_node(service: str, queue: str) -> None:
    assert queue_for_service(CONFIG, service) == queue
    route = ServiceRouter(CONFIG)("sparkjobs.any", (), {"service": service}, {})
    assert route == {"queue": queue}


def test_unknown_service_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownService, match="unknown service 'gemm'; known: clone, gemma"):
        ServiceRouter(CONFIG)("sparkjobs.chat", (), {"service": "gemm"}, {})


def test_unknown_node_is_refused() -> None:
    with pytest.raises(UnknownNode, match="known: spark1, spark2"):
        ServiceRouter(CONFIG)("sparkjobs.ping", (), {"node": "spark3"}, {})


def test_a_task_with_no_target_is_refused_rather_than_sent_to_a_default_queue() -> None:
    with pytest.raises(UnknownService, match="names neither a service nor a node"):
        ServiceRouter(CONFIG)("sparkjobs.chat", (), {"prompt": "hi"}, {})


def test_an_explicit_queue_that_disagrees_with_the_service_is_refused() -> None:
    with pytest.raises(UnknownService, match="leave the queue to the router"):
        ServiceRouter(CONFIG)("sparkjobs.chat", (), {"service": "gemma"}, {"queue": "spark2"})


def test_router_is_what_celery_consults_when_publishing() -> None:
    app = create_app(CONFIG)
    route = app.amqp.router.route({}, "sparkjobs.speak", (), {"service": "orpheus"})
    assert route["queue"].name == "spark2"
    with pytest.raises(UnknownService):
        app.amqp.router.route({}, "sparkjobs.speak", (), {"service": "nope"})


def test_default_service_prefers_the_one_marked_default() -> None:
    assert default_service(CONFIG, frozenset({"openai", "ollama"})) == "gemma"
    assert default_service(CONFIG, frozenset({"qwen-clone"})) == "clone"
