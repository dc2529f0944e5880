"""Custom step functions for the integration tests (imported by the workers by path)."""

from __future__ import annotations

from typing import Any

from sparkjobs.backends import OpenAIClient, ServerClient


def describe(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Say what the step was given: its client's class, a parameter, the previous output."""
    return f"{type(client).__name__} for {params['city']} after {len(previous)} chars"


def ask_twice(client: ServerClient, params: dict[str, Any], previous: Any) -> dict[str, Any]:
    """Use the ready client for two calls of its own; return JSON data."""
    assert isinstance(client, OpenAIClient)
    answers = [client.chat([{"role": "user", "content": f"{params['city']} {n}"}], max_tokens=8)
               for n in range(2)]  # fmt: skip
    return {"answers": len(answers), "nonempty": all(a.text for a in answers)}
