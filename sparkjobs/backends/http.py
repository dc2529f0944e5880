"""The HTTP plumbing every model-server client shares: timeouts, errors, deadlines.

Timeouts come from the service's config: `connect_s` to connect, `first_byte_s` for
any wait on a byte (the first one included), `total_s` for the whole call, checked
as the body streams in.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from sparkjobs.backends.classify import error_for_status, error_for_transport, not_json
from sparkjobs.backends.timings import Clock
from sparkjobs.config.sections import ServiceConfig
from sparkjobs.errors import BadInput, ModelServerError, RetryableError


@dataclass(frozen=True)
class Health:
    """Whether a server (and what it depends on) answers; `problems` says what does not."""

    ok: bool
    problems: tuple[str, ...] = ()


class Reply:
    """An open response whose body is read under the call's total deadline."""

    def __init__(self, response: httpx.Response, deadline: float, clock: Clock, what: str):
        self.response = response
        self._deadline = deadline
        self._clock = clock
        self._what = what

    def _check(self) -> None:
        if self._clock() > self._deadline:
            raise RetryableError(
                f"{self._what}: the answer took longer than timeouts.total_s; the server is "
                "overloaded or stuck (raise timeouts.total_s if long answers are expected)"
            )

    def lines(self) -> Iterator[str]:
        """The body's lines, as they arrive."""
        for line in self.response.iter_lines():
            self._check()
            yield line

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, as they arrive."""
        for chunk in self.response.iter_bytes():
            self._check()
            yield chunk

    def read(self) -> bytes:
        """The whole body."""
        return b"".join(self.chunks())


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the process.

    httpx builds a new context per client unless given one, loading the CA bundle
    each time (~50 ms of CPU); a worker makes a client per call, so that cost would
    bound its throughput and delay every call it admits.
    """
    return httpx.create_ssl_context()


class ServerClient:
    """Base of the clients: one sync httpx client per service (workers use threads).

    Args:
        service: the service's config (url, models, voices, timeouts).
        name: the service's name, for error messages.
        transport: an httpx transport, for tests.
        clock: seconds; injectable for tests.
    """

    def __init__(
        self,
        service: ServiceConfig,
        *,
        name: str | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.service = service
        self.base_url = str(service.url).rstrip("/")
        self.name = name or self.base_url
        self.clock = clock
        limits = service.timeouts
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(
                connect=limits.connect_s,
                read=limits.first_byte_s,
                write=limits.first_byte_s,
                pool=limits.first_byte_s,
            ),
            # The in-flight lease bounds concurrent requests, not the pool: a worker
            # shares one client per service (sparkjobs.backends.shared) and keeps
            # open as many connections as the server may serve at once.
            limits=httpx.Limits(
                max_connections=None,
                max_keepalive_connections=max(20, service.in_flight_limit),
            ),
            transport=transport,
            verify=shared_ssl_context(),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called (a closed client sends nothing more)."""
        return self._http.is_closed

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def request(self, method: str, path: str, *, body: Any = None) -> Iterator[Reply]:
        """Open a request; a non-2xx answer or a transport failure raises, classified.

        Raises:
            RetryableError: refused, timed out, cut off, 5xx, 429.
            PermanentError: other 4xx (UnknownModel for a 404 about a model).
        """
        deadline = self.clock() + self.service.timeouts.total_s
        url = f"{self.base_url}{path}"
        try:
            with self._http.stream(method, path, json=body) as response:
                if response.status_code >= 400:
                    body = response.read()
                    raise error_for_status(
                        self.name, url, response.status_code, body,
                        known_models=self.service.models,
                    )  # fmt: skip
                yield Reply(response, deadline, self.clock, f"{self.name} ({url})")
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, url, exc) from exc

    def get_json(self, path: str) -> Any:
        """GET a JSON document."""
        with self.request("GET", path) as reply:
            body = reply.read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise not_json(f"{self.name} ({self.base_url}{path})", body) from exc

    def probe(self, path: str) -> Health:
        """Health from one GET: ok when it answers 2xx."""
        try:
            with self.request("GET", path) as reply:
                reply.read()
        except ModelServerError as exc:  # a 4xx on a health route is a problem too
            return Health(False, (str(exc),))
        return Health(True)

    def model_or_default(self, model: str | None) -> str:
        """The model asked for, else the service's first configured model."""
        if model:
            return model
        if self.service.models:
            return self.service.models[0]
        raise BadInput(
            f"no model given for service {self.name!r} and none configured; "
            f"pass model=... or set services.{self.name}.models"
        )
