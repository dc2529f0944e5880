"""The client for a service, chosen by its kind."""

from __future__ import annotations

from typing import Any

from sparkjobs.backends.http import ServerClient
from sparkjobs.backends.ollama import OllamaClient
from sparkjobs.backends.openai import OpenAIClient
from sparkjobs.backends.orpheus import OrpheusClient
from sparkjobs.backends.qwen_clone import QwenCloneClient
from sparkjobs.config.sections import ServiceConfig

CLIENTS: dict[str, type[ServerClient]] = {
    "openai": OpenAIClient,
    "ollama": OllamaClient,
    "orpheus": OrpheusClient,
    "qwen-clone": QwenCloneClient,
}


def client_for(service: ServiceConfig, *, name: str | None = None, **options: Any) -> ServerClient:
    """A client of `service`, of the class for its kind.

    Args:
        service: the service's config.
        name: its name in the config, for messages.
        **options: passed to the client (transport, clock).
    """
    return CLIENTS[service.kind](service, name=name, **options)
