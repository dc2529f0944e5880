"""Alerts: ntfy and Slack payloads, one call per incident, a link to the run page."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from sparkjobs.dispatch.status import ServiceStatus
from sparkjobs.observe.alerts import Alert, Watcher, payload, service_alert
from sparkjobs.store.models import Status
from sparkjobs.store.runs import finish_run


class Hook:
    """A webhook receiver on loopback that records each request."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sparkjobs-alerts"


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


ALERT = Alert("run:1", "sparkjobs: briefing failed", "it broke", "http://127.0.0.1:8800/runs/1")


def test_ntfy_gets_the_message_as_body_and_title_link_and_priority_as_headers() -> None:
    headers, body, as_json = payload(ALERT, "ntfy")
    assert body == b"it broke\nhttp://127.0.0.1:8800/runs/1"
    assert as_json is None
    assert headers["Title"] == "sparkjobs: briefing failed"
    assert headers["Click"] == "http://127.0.0.1:8800/runs/1"
    assert headers["Priority"] == "high"


def test_slack_gets_json_text_with_a_link() -> None:
    _headers, body, as_json = payload(ALERT, "slack")
    assert body is None
    link = "<http://127.0.0.1:8800/runs/1|Open the run page>"
    assert as_json == {"text": f"*sparkjobs: briefing failed*\nit broke\n{link}"}


def down(service: str, ok: bool, *, since: float = 1000.0) -> ServiceStatus:
    """`service` as its worker published it: up, or down since `since`."""
    return ServiceStatus(service, "spark2", "orpheus", "up" if ok else "down",
                         "" if ok else "refused", since, since)  # fmt: skip


def said(service: str, state: str) -> ServiceStatus:
    return ServiceStatus(service, "spark2", "orpheus", state, f"{state}, as published")


def test_a_failed_run_and_a_service_going_down_alert_once_each(
    make_client: Callable[..., Any], hook: Hook
) -> None:
    _, store = make_client(f'[alerts]\nwebhook_url = "{hook.url}"\nformat = "slack"\n')
    watcher = Watcher(store.config, store.sessions, "http://phone.example:8800")
    watcher.since = datetime(2026, 1, 1, tzinfo=UTC)
    with store.sessions.begin() as session:
        finish_run(session, store.queued_run, status=Status.FAILED, error="gemma timed out")
    first = watcher.check_once([down("orpheus", False)])
    assert sorted(a.key.split(":")[0] for a in first) == ["run", "run", "service"]
    assert watcher.check_once([down("orpheus", False)]) == []  # same incidents: silent
    assert watcher.check_once([down("orpheus", True)]) == []  # recovered: re-armed
    again = watcher.check_once([down("orpheus", False, since=2000.0)])
    assert [a.title for a in again] == ["sparkjobs: orpheus on spark2 is down"]
    texts = [json.loads(body)["text"] for _, body in hook.calls]
    assert len(texts) == 4
    assert any(f"http://phone.example:8800/runs/{store.queued_run}" in t for t in texts)
    assert any("gemma timed out" in t for t in texts)


def test_an_unreachable_webhook_is_logged_without_its_url(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    from sparkjobs.observe.alerts import send

    _, store = make_client('[alerts]\nwebhook_url = "http://127.0.0.1:9/hook?token=hk-77"\n')
    assert not send(store.config, ALERT)
    assert "not delivered" in caplog.text
    assert "hk-77" not in caplog.text


def test_a_busy_service_never_alerts_and_an_unknown_one_neither_alerts_nor_re_arms(
    make_client: Callable[..., Any], hook: Hook
) -> None:
    _, store = make_client(f'[alerts]\nwebhook_url = "{hook.url}"\nformat = "slack"\n')
    watcher = Watcher(store.config, store.sessions, "http://phone.example:8800")
    assert watcher.check_once([said("orpheus", "busy"), said("clone", "unknown")]) == []
    assert [a.title for a in watcher.check_once([down("orpheus", False)])] == [
        "sparkjobs: orpheus on spark2 is down"
    ]
    # No worker publishes for a while: that says nothing about the server.
    assert watcher.check_once([said("orpheus", "unknown")]) == []
    assert watcher.check_once([down("orpheus", False)]) == []  # the same incident
    assert len(hook.calls) == 1


def test_a_service_alert_carries_the_fix_its_reading_gives() -> None:
    status = ServiceStatus("gemma", "spark1", "openai", "down", "the server serves gemma-3-270m",
                           1000.0, 1000.0, fix='set models = ["gemma-3-270m"]')  # fmt: skip
    alert = service_alert(status, "http://phone.example:8800")
    assert alert.message == ('gemma (openai) on spark1: the server serves gemma-3-270m; '
                             'fix: set models = ["gemma-3-270m"]')  # fmt: skip
    assert "fix" not in service_alert(down("orpheus", False), "u").message
