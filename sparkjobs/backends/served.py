"""Which models a server serves, read from its model list, against the service's config.

OpenAI-compatible servers list them at `GET /v1/models` (`data[].id`), Ollama at
`GET /api/tags` (`models[].name`); a name without a tag means `:latest`. Each answer
is kept with what was seen, in words ("GET /v1/models answers 200 with
gemma-3-270m"), so that a health reading, `sparkjobs doctor` and a failed call can
say what the server said rather than guess. `check_served` compares the list with
`services.<name>.models` and says what to fix when they disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sparkjobs.backends.classify import describe_html, error_message, looks_like_html
from sparkjobs.config.sections import ServiceConfig

# The route that lists a kind's models; kinds without one are not compared.
MODEL_ROUTES = {"openai": "/v1/models", "ollama": "/api/tags"}
SHOWN = 5  # model names said in full; more are counted


@dataclass(frozen=True)
class ModelList:
    """A server's answer to "which models do you serve?"."""

    route: str
    status: int
    models: tuple[str, ...] | None  # None: the answer held no model list
    said: str  # what was seen, for people

    @property
    def names(self) -> str:
        """The models, for people: "gemma-3-270m", "a, b and 3 more" or "no model"."""
        return said_names(self.models or ())


@dataclass(frozen=True)
class Mismatch:
    """Why a server's model list does not fit the service's config, and the fix."""

    detail: str
    fix: str


def said_names(models: Sequence[str]) -> str:
    if not models:
        return "no model"
    shown = ", ".join(models[:SHOWN])
    more = len(models) - SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def read_model_list(kind: str, status: int, body: bytes) -> ModelList:
    """A model list from one answer of `MODEL_ROUTES[kind]` (pure: no network)."""
    route = MODEL_ROUTES[kind]
    seen = f"GET {route} answers {status}"
    if status != 200:
        message = error_message(body) if body.strip() else ""
        return ModelList(route, status, None, f"{seen}: {message}" if message else seen)
    if looks_like_html(body):
        return ModelList(route, status, None, f"{seen} with {describe_html(body)}, not JSON")
    try:
        document: Any = json.loads(body)
    except ValueError:
        return ModelList(route, status, None, f"{seen} with a body that is not JSON: "
                         f"{body[:60]!r}")  # fmt: skip
    entries = document.get("data" if kind == "openai" else "models") if isinstance(
        document, dict) else None  # fmt: skip
    if not isinstance(entries, list):
        return ModelList(route, status, None, f"{seen} with JSON that holds no model list")
    key = "id" if kind == "openai" else "name"
    models = tuple(str(e.get(key) or e.get("model")) for e in entries if isinstance(e, dict))
    listed = f"with {said_names(models)}" if models else "with no model listed"
    return ModelList(route, status, models, f"{seen} {listed}")


def fetch_model_list(http: httpx.Client, kind: str) -> ModelList:
    """GET the kind's model list with `http` (whose base URL is the server's).

    Raises:
        httpx.HTTPError: the server did not answer.
    """
    reply = http.get(MODEL_ROUTES[kind])
    return read_model_list(kind, reply.status_code, reply.content)


def serves(served: Sequence[str], model: str) -> bool:
    """Whether `model` is among `served`; `x` is `x:latest`, as Ollama names models (on
    its native API and on its /v1 face alike)."""
    return model in served or _tagged(model) in {_tagged(m) for m in served}


def check_served(name: str, service: ServiceConfig, listed: ModelList) -> Mismatch | None:
    """None when the server lists every model `services.<name>.models` names (or any
    model, when none is configured); else what is wrong and how to fix it."""
    url = str(service.url).rstrip("/")
    if listed.models is None:
        return Mismatch(f"{listed.said}: no {_server(service.kind)} answers at {url}",
                        _fix_route(name, service, listed))  # fmt: skip
    if not listed.models:
        load = (f"pull one on it (ollama pull {_first(service)})" if service.kind == "ollama"
                else f"start the server with a model ({_first(service)})")  # fmt: skip
        return Mismatch(f"{listed.said}: the server at {url} serves no model", load)
    missing = [m for m in service.models if not serves(listed.models, m)]
    if not missing:
        return None
    kept = [m for m in service.models if m not in missing]
    suggested = json.dumps(kept or list(listed.models[:3]))
    if service.kind == "ollama":
        other = f"pull it on the server: ollama pull {missing[0]}"
    else:
        other = (f"start the server with --served-model-name {' '.join(missing)} "
                 "(llama.cpp: --alias)")  # fmt: skip
    return Mismatch(
        f"services.{name}.models lists {', '.join(service.models)}; the server at {url} "
        f"serves {listed.names}",
        f"set models = {suggested} or {other}",
    )


def _fix_route(name: str, service: ServiceConfig, listed: ModelList) -> str:
    if listed.status in (401, 403):
        return "the server asks for an API key and sparkjobs sends none: start it without one"
    if listed.status >= 500:
        return f"the server fails to list its models: read its log on {service.node}"
    return (f"point services.{name}.url at the {_server(service.kind)}'s root (e.g. "
            f"http://host:{'11434' if service.kind == 'ollama' else '8000'}, without /v1), "
            f"or set services.{name}.kind to the server it is")  # fmt: skip


def _server(kind: str) -> str:
    return "Ollama server" if kind == "ollama" else "OpenAI-compatible server"


def _first(service: ServiceConfig) -> str:
    return service.models[0] if service.models else "MODEL"


def _tagged(model: str) -> str:
    return model if ":" in model else f"{model}:latest"
