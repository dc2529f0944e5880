"""Failure alerts: a webhook (ntfy or Slack-compatible JSON) called once per incident.

An incident is a run that failed, or a service whose health check started failing
(it is re-armed once the service answers again). `Watcher` polls the store and the
services from the run page's process; a key in Redis (SET NX) keeps two watchers
from both sending the same run's alert. The webhook URL may carry a token: it is
never logged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from sparkjobs.store.engine import reading
from sparkjobs.store.models import Run, Status

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config
    from sparkjobs.dispatch.probe import ServiceHealth

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
DEDUPE_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Alert:
    """One message about one incident."""

    key: str  # what makes it one incident: "run:<id>" or "service:<name>:<since>"
    title: str
    message: str
    link: str
    priority: str = "high"
    tags: tuple[str, ...] = ("warning",)


def payload(alert: Alert, style: str) -> tuple[dict[str, str], bytes | None, dict[str, Any] | None]:
    """(headers, body, json) of the webhook request for `style` "ntfy" or "slack"."""
    if style == "slack":
        text = f"*{alert.title}*\n{alert.message}\n<{alert.link}|Open the run page>"
        return {}, None, {"text": text}
    headers = {
        "Title": alert.title, "Click": alert.link, "Priority": alert.priority,
        "Tags": ",".join(alert.tags),
    }  # fmt: skip
    return headers, f"{alert.message}\n{alert.link}".encode(), None


def send(config: Config, alert: Alert) -> bool:
    """Call the webhook once with `alert`; False (logged, URL masked) when that failed."""
    url = config.alerts.webhook_url
    if url is None:
        return False
    headers, body, json_body = payload(alert, config.alerts.format)
    # Header values must be latin-1: fold anything else for ntfy's headers.
    headers = {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
    try:
        response = httpx.post(
            url.get_secret_value(), headers=headers, content=body, json=json_body,
            timeout=SEND_TIMEOUT_S,
        )  # fmt: skip
        response.raise_for_status()
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        if isinstance(exc, httpx.HTTPStatusError):
            reason = f"HTTP {exc.response.status_code}"
        log.warning("alert %s not delivered to the webhook: %s", alert.key, reason)
        return False
    return True


def run_alert(run: Run, base_url: str) -> Alert:
    error = (run.error or "no error recorded").strip()
    return Alert(
        key=f"run:{run.id}",
        title=f"sparkjobs: {run.job} failed",
        message=f"Run {run.id} of {run.job} ({run.trigger.value}) failed: {error[:500]}",
        link=f"{base_url}/runs/{run.id}",
    )


def service_alert(probe: ServiceHealth, base_url: str) -> Alert:
    return Alert(
        key=f"service:{probe.service}:{probe.checked_at.isoformat()}",
        title=f"sparkjobs: {probe.service} on {probe.node} is down",
        message=f"{probe.service} ({probe.kind}) on {probe.node}: {probe.problem or 'no answer'}",
        link=f"{base_url}/health",
        tags=("rotating_light",),
    )


@dataclass
class Watcher:
    """Polls for failed runs and services going down; alerts each incident once."""

    config: Config
    sessions: sessionmaker[Session]
    base_url: str
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    sent_runs: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watcher:
        threading.Thread(target=self._loop, name="alerts", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.check_once()
            except Exception as exc:  # the watcher outlives a database hiccup
                log.warning("alert watcher: %s", exc)
            self.stopping.wait(self.config.alerts.health_every_s)

    def check_once(self, probes: list[ServiceHealth] | None = None) -> list[Alert]:
        """One pass: alert new failed runs and newly down services; the alerts sent."""
        from sparkjobs.dispatch.probe import probe_services

        sent = []
        with reading(self.sessions) as session:
            failed = list(session.scalars(
                select(Run).where(Run.status == Status.FAILED, Run.finished_at >= self.since)
                .order_by(Run.finished_at)
            ))  # fmt: skip
        for run in failed:
            alert = run_alert(run, self.base_url)
            if str(run.id) not in self.sent_runs and self._claim(alert.key):
                self.sent_runs.add(str(run.id))
                if send(self.config, alert):
                    sent.append(alert)
        for probe in probes if probes is not None else probe_services(self.config):
            if probe.ok:
                self.down.discard(probe.service)
            elif probe.service not in self.down:
                self.down.add(probe.service)
                alert = service_alert(probe, self.base_url)
                if send(self.config, alert):
                    sent.append(alert)
        return sent

    def _claim(self, key: str) -> bool:
        """True unless another watcher already claimed this incident (in Redis)."""
        from sparkjobs.broker.client import key as redis_key
        from sparkjobs.broker.client import redis_client

        try:
            client = redis_client(self.config, timeout_s=2.0)
            try:
                claimed = client.set(redis_key(self.config, "alert", key), 1, nx=True,
                                     ex=DEDUPE_TTL_S)  # fmt: skip
            finally:
                client.close()
        except Exception as exc:  # without Redis, this process's memory dedupes
            log.warning("alert watcher: Redis did not answer (%s); deduping locally", exc)
            return True
        return bool(claimed)
