"""Probing one model server over HTTP: its state, what was seen, and what would fix it.

By kind: an OpenAI-compatible server answers `GET /health` (vLLM, SGLang, TGI,
llama.cpp's llama-server); where that answers 404 or 405 (llama-cpp-python has none)
its model list stands in: `GET /v1/models` answering 200 with the configured models
means up. Then `/metrics` for backpressure, under vLLM's names or llama-server's; a
server with neither says nothing of its load, which is no fault. Ollama: `/api/version`
then `/api/ps`. The Orpheus front-end: its completions backend, then its voices route.
The clone server: `/health`.

With `check_models` (a worker's first probe of a service, and `sparkjobs doctor`) the
configured models are compared with the server's list (`/v1/models`, Ollama
`/api/tags`): a server that serves other models is down, saying which. Every reading
that is not up says what was seen ("GET /health answers 404; GET /v1/models answers
200 with gemma-3-270m") and the fix that follows from it, not a guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from sparkjobs.backends.classify import describe_html, error_message, looks_like_html
from sparkjobs.backends.http import shared_ssl_context
from sparkjobs.backends.served import MODEL_ROUTES, check_served, fetch_model_list
from sparkjobs.config.sections import ServiceConfig
from sparkjobs.dispatch.backpressure import ServerLoad, judge, parse_metrics, parse_ollama_ps
from sparkjobs.dispatch.health import Probe, ServerState

if TYPE_CHECKING:
    from sparkjobs.config import Config

PROBE_TIMEOUT_S = 3.0
DOWN, UP = ServerState.DOWN, ServerState.UP


def probe_service(
    name: str, service: ServiceConfig, config: Config, *, busy: bool, check_models: bool = False
) -> Probe:
    """Probe one service with short timeouts.

    Args:
        busy: some worker holds a lease of the service now. A serial server (the
            Orpheus front-end) then stalls even its voices route, so a probe that times
            out is a busy server, not a dead one.
        check_models: also compare the configured models with the server's list.
    """
    try:
        if service.kind == "orpheus" and service.backend_url is not None:
            # The front-end answers 200 with empty WAVs while its backend is down.
            backend = str(service.backend_url).rstrip("/")
            try:
                httpx.get(
                    f"{backend}/v1/models", timeout=_timeout(service), verify=shared_ssl_context()
                )
            except httpx.HTTPError as exc:
                return Probe(
                    DOWN,
                    f"its completions backend at {backend} does not answer ({type(exc).__name__})",
                    fix=f"start the Orpheus completions "
                    f"backend on {service.node}, or fix services.{name}.backend_url",
                )
        with _client(service) as http:
            return _probe(http, name, service, config, check_models)
    except httpx.HTTPError as exc:
        return _transport_problem(exc, name, service, busy=busy)
    except ValueError as exc:  # a body that is not what the route promises
        return Probe(
            DOWN,
            f"unexpected answer: {exc}",
            fix=f"check that services.{name}.url and kind name the server there",
        )


def served_problem(name: str, service: ServiceConfig) -> Probe | None:
    """The configured models against the server's list, read from this host: a down
    Probe saying what differs, or None when they agree (or the kind has no list, or
    the server does not answer: its health reading says that)."""
    if service.kind not in MODEL_ROUTES:
        return None
    try:
        with _client(service) as http:
            mismatch = check_served(name, service, fetch_model_list(http, service.kind))
    except httpx.HTTPError:
        return None
    return None if mismatch is None else Probe(DOWN, mismatch.detail, fix=mismatch.fix)


def _client(service: ServiceConfig) -> httpx.Client:
    base_url = str(service.url).rstrip("/")
    return httpx.Client(base_url=base_url, timeout=_timeout(service), verify=shared_ssl_context())


def _timeout(service: ServiceConfig) -> httpx.Timeout:
    return httpx.Timeout(PROBE_TIMEOUT_S, connect=min(PROBE_TIMEOUT_S, service.timeouts.connect_s))


def _transport_problem(
    exc: httpx.HTTPError, name: str, service: ServiceConfig, *, busy: bool
) -> Probe:
    url = str(service.url).rstrip("/")
    if isinstance(exc, httpx.ConnectError):
        # vLLM refuses connections while it loads its model, as it does when it is
        # not running: nothing tells the two apart from outside.
        return Probe(
            DOWN,
            "connection refused (not running, or loading its model)",
            fix=f"nothing listens at {url}: start the {service.kind} server on "
            f"{service.node} (or wait for it to load), or fix services.{name}.url",
        )
    if isinstance(exc, httpx.TimeoutException) and busy:
        return Probe(UP, "the probe waited behind a call in progress", busy=True)
    if isinstance(exc, httpx.TimeoutException):
        return Probe(
            DOWN,
            f"{type(exc).__name__}: no answer within {PROBE_TIMEOUT_S:g} s",
            fix=f"the server at {url} hangs or is overloaded: read its log on {service.node}",
        )
    return Probe(
        DOWN,
        f"{type(exc).__name__}: {exc}",
        fix=f"the connection to {url} failed: check the server on {service.node}",
    )


def _probe(
    http: httpx.Client, name: str, service: ServiceConfig, config: Config, check_models: bool
) -> Probe:
    if service.kind == "orpheus":
        # No /health: the voices route is the nearest thing (and waits behind a call).
        reply = http.get("/v1/audio/voices")
        if reply.status_code >= 400:
            return Probe(
                DOWN,
                f"GET /v1/audio/voices answers {reply.status_code}",
                fix=f"read the Orpheus front-end's log on {service.node}",
            )
        return Probe(UP)
    if service.kind == "ollama":
        return _probe_ollama(http, name, service, config, check_models)
    if service.kind == "openai":
        return _probe_openai(http, name, service, config, check_models)
    return _probe_health_route(http, service)


def _probe_openai(
    http: httpx.Client, name: str, service: ServiceConfig, config: Config, check_models: bool
) -> Probe:
    reply = http.get("/health")
    seen = f"GET /health answers {reply.status_code}"
    said = ""
    if looks_like_html(reply.content):
        return _not_a_server(name, service, f"{seen} with {describe_html(reply.content)}")
    if reply.status_code in (404, 405):  # no /health (llama-cpp-python): the model list
        listed = fetch_model_list(http, "openai")
        mismatch = check_served(name, service, listed)
        if mismatch is not None:
            return Probe(DOWN, f"{seen}; {mismatch.detail}", fix=mismatch.fix)
        said = f"no /health ({seen}); {listed.said}"
    elif reply.status_code >= 400 or not _model_loaded(reply):
        return _unhealthy(service, reply, seen)
    elif check_models:
        mismatch = check_served(name, service, fetch_model_list(http, "openai"))
        if mismatch is not None:
            return Probe(DOWN, mismatch.detail, fix=mismatch.fix)
    return _judged(service, config, _metrics(http), said)


def _probe_health_route(http: httpx.Client, service: ServiceConfig) -> Probe:
    """The clone server's `/health` (`model_loaded: false` or 503 while it loads)."""
    reply = http.get("/health")
    if reply.status_code >= 400 or not _model_loaded(reply):
        return _unhealthy(service, reply, f"GET /health answers {reply.status_code}")
    return Probe(UP)


def _probe_ollama(
    http: httpx.Client, name: str, service: ServiceConfig, config: Config, check_models: bool
) -> Probe:
    reply = http.get("/api/version")
    if reply.status_code != 200 or not isinstance(_json_or_none(reply), dict):
        body = (
            describe_html(reply.content)
            if looks_like_html(reply.content)
            else ("a body that is no version" if reply.status_code == 200 else "")
        )
        return _not_a_server(
            name,
            service,
            f"GET /api/version answers {reply.status_code}" + (f" with {body}" if body else ""),
        )
    if check_models:
        mismatch = check_served(name, service, fetch_model_list(http, "ollama"))
        if mismatch is not None:
            return Probe(DOWN, mismatch.detail, fix=mismatch.fix)
    ps = http.get("/api/ps")
    document = _json_or_none(ps) if ps.status_code == 200 else None
    load = parse_ollama_ps(document) if isinstance(document, dict) else ServerLoad()
    return _judged(service, config, load, "")


def _judged(service: ServiceConfig, config: Config, load: ServerLoad, said: str) -> Probe:
    limits = config.dispatch
    verdict = judge(
        load,
        max_waiting=limits.max_server_waiting,
        max_kv_cache_usage=limits.max_kv_cache_usage,
        models=service.models,
    )
    detail = "; ".join(part for part in (said, verdict.detail) if part)
    return Probe(ServerState.OVERLOADED if verdict.overloaded else UP, detail)


def _metrics(http: httpx.Client) -> ServerLoad:
    """The load `/metrics` gives, under whichever names it has; none (no route, no known
    name, no answer) holds nothing back and is no fault."""
    try:
        reply = http.get("/metrics")
    except httpx.HTTPError:
        return ServerLoad()
    if reply.status_code != 200 or looks_like_html(reply.content):
        return ServerLoad()
    return parse_metrics(reply.text)


def _unhealthy(service: ServiceConfig, reply: httpx.Response, seen: str) -> Probe:
    if reply.status_code == 503 or not _model_loaded(reply):
        return Probe(
            ServerState.LOADING,
            f"{seen}: the model is loading (or the engine died)",
            fix=f"wait for it to load; if it stays so, read its log on {service.node}",
        )
    said = error_message(reply.content) if reply.content.strip() else ""
    return Probe(
        DOWN,
        f"{seen}: {said}" if said else seen,
        fix=f"the server answers but not as healthy: read its log on {service.node}",
    )


def _not_a_server(name: str, service: ServiceConfig, seen: str) -> Probe:
    url = str(service.url).rstrip("/")
    what = "Ollama server" if service.kind == "ollama" else "OpenAI-compatible server"
    return Probe(
        DOWN,
        f"{seen}: no {what} answers at {url}",
        fix=f"point services.{name}.url at the {what}'s root, or set "
        f"services.{name}.kind to the server it is",
    )


def _model_loaded(reply: httpx.Response) -> bool:
    body = _json_or_none(reply)
    return bool(body.get("model_loaded", True)) if isinstance(body, dict) else True


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None
