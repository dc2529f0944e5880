"""A worker's clients: one per service for the whole process, so calls keep their
connections open.

A client made per call opens a new TCP connection to the model server, and builds
an httpx client, for every step: about a millisecond of each step's time, and more
of a busy worker's CPU. httpx clients are safe to share between threads; each
request takes a connection from the client's pool or opens one. A server that
closed an idle connection is reconnected to by httpx on the next request.
"""

from __future__ import annotations

import threading

from sparkjobs.backends.factory import client_for
from sparkjobs.backends.http import ServerClient
from sparkjobs.config.sections import ServiceConfig

_clients: dict[str, ServerClient] = {}
_lock = threading.Lock()


def shared_client(service: ServiceConfig, *, name: str) -> ServerClient:
    """This process's client of service `name` (made on first use; never close it).

    A config that changed under the same name (a process that loads another config,
    such as a test) gets a new client; the old one is closed by whoever still uses
    it or by the garbage collector.
    """
    found = _clients.get(name)
    if found is not None and _usable(found, service):
        return found
    with _lock:
        found = _clients.get(name)
        if found is None or not _usable(found, service):
            found = _clients[name] = client_for(service, name=name)
        return found


def _usable(client: ServerClient, service: ServiceConfig) -> bool:
    """Made for this config, and not closed (a custom step may close what it was given)."""
    return (client.service is service or client.service == service) and not client.closed


def close_shared() -> None:
    """Close every shared client (a worker's shutdown)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
