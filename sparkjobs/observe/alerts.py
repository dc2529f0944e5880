"""Failure alerts: a webhook (ntfy or Slack-compatible JSON) called once per incident.

An incident is a run that failed, or a service whose published health reading
(`sparkjobs.dispatch.status`, what dispatch obeys) turned down or loading; it is
re-armed once the service answers again (up, busy or overloaded). A service nobody
publishes a reading for is unknown: no alert, and no re-arming. `Watcher` polls the
store and the readings from the run page's process; a key in Redis (SET NX) keeps two
watchers from both sending the same incident (a service's incident is its reading's
state and when it began). The webhook URL may carry a token: it is
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
    from sparkjobs.dispatch.status import ServiceStatus

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


def service_alert(status: ServiceStatus, base_url: str) -> Alert:
    since = "?" if status.since is None else f"{status.since:.3f}"
    return Alert(
        key=f"service:{status.service}:{status.state}:{since}",
        title=f"sparkjobs: {status.service} on {status.node} is {status.state}",
        message=f"{status.service} ({status.kind}) on {status.node}: "
        f"{status.detail or 'no answer'}" + (f"; fix: {status.fix}" if status.fix else ""),
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

    def check_once(self, statuses: list[ServiceStatus] | None = None) -> list[Alert]:
        """One pass: alert new failed runs and newly down services; the alerts sent.

        Args:
            statuses: the services' health (default: the published readings).
        """
        from sparkjobs.dispatch.status import read_statuses

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
        for status in statuses if statuses is not None else read_statuses(self.config):
            if status.ok:
                self.down.discard(status.service)
            elif status.known and status.service not in self.down:
                self.down.add(status.service)
                alert = service_alert(status, self.base_url)
                if self._claim(alert.key) and send(self.config, alert):
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
