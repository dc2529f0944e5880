"""Service health: each node's worker probes its servers and publishes what it found.

A reading is up, loading, overloaded or down, with a detail for people and the time
the state began. An up reading may be marked busy: every slot of the service is held,
or its probe waited behind a call in progress (a serial server such as the Orpheus
front-end answers nothing else while it synthesizes). Busy is not a state of its own:
a busy server is reachable and admits the next unit of its line like any up server.
A reading is published in Redis with a TTL, so a reading nobody refreshes
(the node's worker is gone) disappears rather than lying; no reading means unknown,
and unknown does not hold work back. Probes, by kind: vLLM `/health` then `/metrics`
(backpressure), Ollama `/api/version` then `/api/ps`, the Orpheus front-end's voices
route and its completions backend, the clone server's `/health`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import httpx

from sparkjobs.backends.http import shared_ssl_context
from sparkjobs.config.sections import ServiceConfig
from sparkjobs.dispatch.backpressure import ServerLoad, judge, parse_ollama_ps, parse_vllm_metrics

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

PROBE_TIMEOUT_S = 3.0


class ServerState(StrEnum):
    UP = "up"
    LOADING = "loading"
    OVERLOADED = "overloaded"
    DOWN = "down"

    @property
    def reachable(self) -> bool:
        """Whether a call could be answered at all (overloaded servers answer, slowly)."""
        return self in (ServerState.UP, ServerState.OVERLOADED)


@dataclass(frozen=True)
class Reading:
    """One service's health: its state, why, since when, and when it was checked."""

    service: str
    state: ServerState
    detail: str
    since: float  # epoch seconds when this state began
    checked: float  # epoch seconds of the probe

    @classmethod
    def from_json(cls, text: str | bytes) -> Reading:
        data = json.loads(text)
        return cls(
            service=str(data["service"]),
            state=ServerState(data["state"]),
            detail=str(data["detail"]),
            since=float(data["since"]),
            checked=float(data["checked"]),
            busy=bool(data.get("busy", False)),  # absent from older workers' readings
        )

    busy: bool = False  # up, with every slot taken (or the probe waited behind a call)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @property
    def label(self) -> str:
        """The state for people: "busy" for a busy up server, else the state's name."""
        return "busy" if self.busy and self.state is ServerState.UP else self.state.value

    def describe(self, url: str, now: float) -> str:
        """E.g. "gemma (http://...) is down for 42 s: connection refused"."""
        for_s = max(0.0, now - self.since)
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.service} ({url}) is {self.label} for {for_s:.0f} s{detail}"


@dataclass(frozen=True)
class Probe:
    """What a probe found, before it is dated and published."""

    state: ServerState
    detail: str = ""
    busy: bool = False


def busy_when_full(probe: Probe, held: int, limit: int) -> Probe:
    """`probe`, marked busy when it found the server up with all `limit` slots held."""
    if probe.state is not ServerState.UP or probe.busy or held < limit:
        return probe
    detail = probe.detail or f"all {limit} slot(s) in use"
    return Probe(ServerState.UP, detail, busy=True)


def probe_service(name: str, service: ServiceConfig, config: Config, *, busy: bool) -> Probe:
    """Probe one service with short timeouts.

    Args:
        busy: some worker holds a lease of the service now. A serial server (the
            Orpheus front-end) then stalls even its voices route, so a probe that times
            out is a busy server, not a dead one.
    """
    connect_s = min(PROBE_TIMEOUT_S, service.timeouts.connect_s)
    timeout = httpx.Timeout(PROBE_TIMEOUT_S, connect=connect_s)
    try:
        if service.kind == "orpheus" and service.backend_url is not None:
            # The front-end answers 200 with empty WAVs while its backend is down.
            backend = str(service.backend_url).rstrip("/")
            try:
                httpx.get(f"{backend}/v1/models", timeout=timeout, verify=shared_ssl_context())
            except httpx.HTTPError as exc:
                return Probe(ServerState.DOWN, f"its completions backend at {backend} does "
                             f"not answer ({type(exc).__name__})")  # fmt: skip
        base_url = str(service.url).rstrip("/")
        with httpx.Client(base_url=base_url, timeout=timeout, verify=shared_ssl_context()) as http:
            return _probe(http, service, config)
    except httpx.HTTPError as exc:
        return _transport_problem(exc, busy=busy)
    except ValueError as exc:  # a body that is not what the route promises
        return Probe(ServerState.DOWN, f"unexpected answer: {exc}")


def _transport_problem(exc: httpx.HTTPError, *, busy: bool) -> Probe:
    if isinstance(exc, httpx.ConnectError):
        # vLLM refuses connections while it loads its model, as it does when it is
        # not running: nothing tells the two apart from outside.
        return Probe(ServerState.DOWN, "connection refused (not running, or loading its model)")
    if isinstance(exc, httpx.TimeoutException) and busy:
        return Probe(ServerState.UP, "the probe waited behind a call in progress", busy=True)
    return Probe(ServerState.DOWN, f"{type(exc).__name__}: {exc}")


def _probe(http: httpx.Client, service: ServiceConfig, config: Config) -> Probe:
    limits = config.dispatch
    if service.kind == "orpheus":
        # No /health: the voices route is the nearest thing (and waits behind a call).
        reply = http.get("/v1/audio/voices")
        if reply.status_code >= 400:
            return Probe(ServerState.DOWN, f"/v1/audio/voices answers {reply.status_code}")
        return Probe(ServerState.UP)
    if service.kind == "ollama":
        http.get("/api/version").raise_for_status()
        reply = http.get("/api/ps")
        reply.raise_for_status()
        load = parse_ollama_ps(reply.json())
    else:  # vLLM and the clone server both answer /health
        reply = http.get("/health")
        body = _json_or_none(reply)
        loaded = body.get("model_loaded", True) if isinstance(body, dict) else True
        if reply.status_code == 503 or loaded is False:
            return Probe(ServerState.LOADING, f"/health answers {reply.status_code}: "
                         "the model is loading (or the engine died)")  # fmt: skip
        if reply.status_code >= 400:
            return Probe(ServerState.DOWN, f"/health answers {reply.status_code}")
        load = ServerLoad()
        if service.kind == "openai":
            metrics = http.get("/metrics")
            if metrics.status_code == 200:
                load = parse_vllm_metrics(metrics.text)
    verdict = judge(
        load,
        max_waiting=limits.max_server_waiting,
        max_kv_cache_usage=limits.max_kv_cache_usage,
        models=service.models,
    )
    return Probe(ServerState.OVERLOADED if verdict.overloaded else ServerState.UP, verdict.detail)


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


class HealthBoard:
    """Published readings in Redis: `health:<service>`, each with a TTL."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        from sparkjobs.broker.client import key

        self.client = client
        self.config = config
        self._prefix = key(config, "health", "")

    def key(self, service: str) -> str:
        """The Redis key of `service`'s reading."""
        return self._prefix + service

    def read(self, service: str) -> Reading | None:
        """The live reading of `service`; None when nobody published one lately."""
        raw = self.client.get(self.key(service))
        return None if raw is None else Reading.from_json(cast(bytes, raw))

    def publish(self, service: str, probe: Probe, *, now: float | None = None) -> Reading:
        """Publish `probe` as `service`'s reading; the state keeps its start time."""
        now = time.time() if now is None else now
        previous = self.read(service)
        since = previous.since if previous and previous.state == probe.state else now
        reading = Reading(service, probe.state, probe.detail, since, now, probe.busy)
        ttl_ms = max(1, round(self.config.dispatch.health_ttl_s * 1000))
        self.client.set(self.key(service), reading.to_json(), px=ttl_ms)
        return reading
