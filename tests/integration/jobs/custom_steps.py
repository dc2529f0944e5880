"""Custom step functions for the integration tests (imported by the workers by path)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
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


def meet_twin(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Leave a mark in `params["barrier"]`, then wait (up to 20 s) for a second delivery
    of this step to leave its own: two deliveries of the step run at the same time."""
    folder = Path(params["barrier"])
    (folder / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return "met"


def count_me(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Leave a mark in `params["counter"]` and take a second, so that a twin delivery
    of this step, if there were one, would run meanwhile and leave its own."""
    (Path(params["counter"]) / uuid.uuid4().hex).touch()
    time.sleep(1.0)
    return "counted"


def quick(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Return at once: a step whose start is written with its success."""
    return "quick"


def wait_for_go(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Run until the file `params["go"]` exists (up to 60 s): a step that lasts."""
    go, deadline = Path(params["go"]), time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "went"


def broken(client: ServerClient, params: dict[str, Any], previous: Any) -> str:
    """Fail as a bug does: not an error worth retrying."""
    raise ValueError("this step is broken")
