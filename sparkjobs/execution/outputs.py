"""Calling the model servers for a step, and what comes back: text, data or audio.

Each function takes a ready client of the step's service and the step's context,
and returns an `Output`. Who may call a server when is not decided here: the
cluster-wide leases of `sparkjobs.dispatch` keep every server within its limit.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkjobs.backends.http import ServerClient
from sparkjobs.backends.ollama import OllamaClient
from sparkjobs.backends.openai import OpenAIClient
from sparkjobs.backends.qwen_clone import QwenCloneClient, Reference
from sparkjobs.backends.timings import Timings
from sparkjobs.errors import BadInput, PermanentError
from sparkjobs.execution.audio import read_artifact
from sparkjobs.execution.context import StepContext
from sparkjobs.execution.templates import render
from sparkjobs.store.attempts import StepTimings

if TYPE_CHECKING:
    from sparkjobs.config import Config


@dataclass(frozen=True)
class Output:
    """What a step produced: text, JSON data or WAV bytes, and what it read."""

    text: str | None = None
    data: dict[str, Any] | None = None
    wav: bytes | None = None
    timings: StepTimings | None = None
    inputs: tuple[str, ...] = field(default=())  # sha256 of artifacts the step read


def step_timings(timings: Timings) -> StepTimings:
    """The client's timings as the store records them."""
    return StepTimings(
        ttft_ms=timings.ttft_ms, tokens_in=timings.tokens_in, tokens_out=timings.tokens_out,
        tokens_per_s=timings.tokens_per_s, audio_s=timings.audio_s, rtf=timings.rtf,
    )  # fmt: skip


def run_chat(
    client: ServerClient, context: StepContext, on_text: Callable[[str], None] | None = None
) -> Output:
    """Ask an LLM service; the rendered prompt (and system prompt) are the messages.

    `on_text` is called with each piece of the reply as it arrives (token streaming).
    """
    spec = context.spec
    prompt = render(str(spec["prompt"]), context.template(), where=context.where)
    messages = []
    if spec.get("system"):
        system = render(str(spec["system"]), context.template(), where=context.where)
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    model, max_tokens, temperature = (
        spec.get("model"),
        spec.get("max_tokens"),
        spec.get("temperature"),
    )
    if isinstance(client, OllamaClient):
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        if temperature is not None:
            options["temperature"] = temperature
        result = client.chat(
            messages, model=model, options=options or None,
            on_delta=None if on_text is None else lambda delta: on_text(delta.content),
        )  # fmt: skip
    elif isinstance(client, OpenAIClient):
        result = client.chat(
            messages, model=model, max_tokens=max_tokens, temperature=temperature,
            on_delta=None if on_text is None else lambda delta: on_text(delta.content),
        )  # fmt: skip
    else:
        raise BadInput(
            f"{context.where}: a chat step needs an LLM service, not {context.service!r}"
        )
    return Output(text=result.text, timings=step_timings(result.timings))


def run_clone(client: ServerClient, context: StepContext, reference: bytes, ref: str) -> Output:
    """Speak the rendered text in the voice of `reference` (WAV bytes)."""
    if not isinstance(client, QwenCloneClient):
        raise BadInput(f"{context.where}: a clone step needs a qwen-clone service")
    spec = context.spec
    text = render(str(spec["text"]), context.template(), where=context.where)
    ref_text = spec.get("ref_text")
    voice = Reference(reference, text=ref_text, x_vector_only=bool(spec.get("x_vector_only")))
    result = client.speak(text, reference=voice)
    inputs = (ref,) if len(ref) == 64 else ()
    return Output(wav=result.wav, timings=step_timings(result.timings), inputs=inputs)


def read_reference(config: Config, node: str, ref: str, *, where: str) -> bytes:
    """A clone step's reference voice: an artifact (pulled to `node`) or a file.

    Raises:
        BadInput: a file that cannot be read on this node, saying how to deploy it.
    """
    if len(ref) == 64 and all(c in "0123456789abcdef" for c in ref):
        return read_artifact(config, node, ref)
    try:
        with open(ref, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise BadInput(
            f"{where}: reference audio {ref!r} cannot be read on node {node} "
            f"({exc.strerror}); deploy it with the schedules, or give an artifact's "
            "sha256 (`sparkjobs artifacts put FILE`)"
        ) from exc


def clone_voice(config: Config, node: str, spec: dict[str, Any], *, where: str) -> Reference:
    """The reference a clone step speaks in, from its spec."""
    ref = str(spec["ref_audio"])
    audio = read_reference(config, node, ref, where=where)
    return Reference(
        audio, text=spec.get("ref_text"), x_vector_only=bool(spec.get("x_vector_only"))
    )


CustomFunction = Callable[[ServerClient, dict[str, Any], Any], Any]


def load_function(path: str, schedules_dir: Path | None = None) -> CustomFunction:
    """The function named `module:attr` (or `module.attr`).

    The parent of `schedules_dir` joins the import path when the module is not
    found otherwise, so `schedules.briefing:summarize` resolves on every node.

    Raises:
        BadInput: the module or attribute does not exist, or is not callable.
    """
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if schedules_dir is None or not schedules_dir.is_dir():
                raise
            sys.path.append(str(schedules_dir.resolve().parent))
            module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BadInput(
            f"custom step function {path!r} cannot be imported ({exc}); name it as "
            "'package.module:function', importable on every node"
        ) from exc
    if not callable(function):
        raise BadInput(f"custom step function {path!r} is not callable")
    return function  # type: ignore[no-any-return]


def run_custom(client: ServerClient, context: StepContext, schedules_dir: Path) -> Output:
    """Call the step's function as `fn(client, params, previous)` and classify its return.

    `previous` is the previous step's JSON data if it had any, else its text (None
    for a first step). A str return is text, bytes a WAV, anything else JSON data.
    """
    function = load_function(str(context.spec["function"]), schedules_dir)
    previous: Any = context.previous_data
    if previous is None and context.outputs:
        previous = context.outputs[-1]
    value = function(client, dict(context.params), previous)
    if isinstance(value, str):
        return Output(text=value)
    if isinstance(value, bytes | bytearray):
        return Output(wav=bytes(value))
    if value is None:
        raise PermanentError(f"custom step {context.spec['function']!r} returned None")
    return Output(data=value if isinstance(value, dict) else {"value": value})
