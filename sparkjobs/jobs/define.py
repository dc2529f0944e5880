"""The public API for defining jobs: a name, a schedule, parameters and steps.

A job file under `schedules_dir` calls `job(...)`; each call registers one job::

    from sparkjobs import chat, cron, job, speak

    job(
        "morning-briefing",
        schedule=cron("0 7 * * *", tz="Europe/Berlin"),
        params={"city": "Berlin"},
        steps=[
            chat("Write a short morning briefing for {params.city} on {slot:%A %d %B}."),
            speak("{previous}", voice="tara"),
        ],
    )

Prompts and texts are `str.format` templates over: `slot` (the scheduled time,
aware, in the job's time zone; the submit time for ad-hoc runs), `params` (the
run's parameters, by attribute), `previous` (the previous step's text output)
and `outputs` (every earlier step's output, by index). This module only
describes jobs; checking them against a config and running them live elsewhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sparkjobs.errors import BadInput

Misfire = Literal["skip", "run_once"]
Overlap = Literal["skip", "queue"]


class JobDefinitionError(BadInput):
    """A job file describes a job that cannot be; the message names the file and line."""


@dataclass(frozen=True)
class Origin:
    """Where in a job file something was defined, for error messages."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _caller(depth: int = 2) -> Origin:
    frame = inspect.stack()[depth]
    return Origin(frame.filename, frame.lineno)


# --- schedules ---------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """Fire at the times a 5-field cron expression names, in an IANA time zone."""

    expression: str
    tz: str = "UTC"


@dataclass(frozen=True)
class Every:
    """Fire every `interval`, aligned to the Unix epoch (so restarts do not shift slots)."""

    interval: timedelta


Schedule = Cron | Every


def cron(expression: str, *, tz: str = "UTC") -> Cron:
    """A cron schedule, e.g. `cron("0 7 * * 1-5", tz="Europe/Berlin")`."""
    _require(_caller(), "cron", expression=(expression, str), tz=(tz, str))
    return Cron(expression.strip(), tz)


def every(
    *, hours: float = 0, minutes: float = 0, seconds: float = 0, interval: timedelta | None = None
) -> Every:
    """An interval schedule, e.g. `every(hours=1)`."""
    origin = _caller()
    try:
        span = interval or timedelta(hours=hours, minutes=minutes, seconds=seconds)
        positive = span > timedelta(0)
    except (TypeError, ValueError, OverflowError) as exc:  # NaN, a string, 1e300 hours...
        raise JobDefinitionError(
            f"{origin}: every(...) needs a finite number of hours, minutes or seconds, or "
            f"interval=timedelta(...) ({exc}); e.g. every(minutes=5)"
        ) from exc
    if not positive:
        raise JobDefinitionError(
            f"{origin}: every(...) needs a positive interval; e.g. every(minutes=5)"
        )
    return Every(span)


# --- steps -------------------------------------------------------------------


@dataclass(frozen=True)
class ChatStep:
    """Ask an LLM service (kind openai or ollama); the output is the reply's text."""

    prompt: str
    service: str | None = None  # None: the default LLM service
    model: str | None = None  # None: the service's first model
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    # Publish the reply's pieces over Redis while it is generated (`submit chat --stream`).
    stream_tokens: bool = False
    origin: Origin = field(default=Origin("?", 0), compare=False)
    kind: Literal["chat"] = "chat"


@dataclass(frozen=True)
class SpeakStep:
    """Read text aloud on a TTS service (kind orpheus); the output is a WAV artifact."""

    text: str
    service: str | None = None  # None: the default orpheus service
    voice: str | None = None  # None: the service's first voice
    # Right after a chat step: start on its reply's first sentence, while it generates
    # (`sparkjobs.jobs.handoff`); False waits for the whole reply.
    stream: bool = True
    origin: Origin = field(default=Origin("?", 0), compare=False)
    kind: Literal["speak"] = "speak"


@dataclass(frozen=True)
class CloneStep:
    """Speak with a reference voice on a voice-clone service (kind qwen-clone).

    `ref_audio` is a WAV path (relative to the job file) or an artifact's sha256.
    """

    text: str
    ref_audio: str
    ref_text: str | None = None
    service: str | None = None
    x_vector_only: bool = True
    stream: bool = True  # as for speak: start on the chat's first sentence
    origin: Origin = field(default=Origin("?", 0), compare=False)
    kind: Literal["clone"] = "clone"


@dataclass(frozen=True)
class CustomStep:
    """Run a Python function named by dotted path, on the node of `service`.

    The function is called as `fn(client, params, previous)` with a ready client
    of that service, the run's parameters and the previous step's output; it
    returns text (str), JSON-able data, or WAV bytes.
    """

    function: str  # "schedules.briefing:summarize"
    service: str
    origin: Origin = field(default=Origin("?", 0), compare=False)
    kind: Literal["custom"] = "custom"


Step = ChatStep | SpeakStep | CloneStep | CustomStep


def chat(prompt: str, **options: Any) -> ChatStep:
    """A chat step; options: service, model, system, max_tokens, temperature, stream_tokens."""
    origin = _caller()
    _require(origin, "chat", prompt=(prompt, str), **_typed(options, _CHAT_OPTIONS))
    for name, low in (("max_tokens", 1), ("temperature", 0)):
        value = options.get(name)
        if value is not None and not low <= value < float("inf"):
            raise JobDefinitionError(f"{origin}: chat({name}={value!r}) must be at least {low}")
    return ChatStep(prompt, origin=origin, **options)


def speak(text: str, **options: Any) -> SpeakStep:
    """A speak step; options: service, voice, stream."""
    origin = _caller()
    _require(origin, "speak", text=(text, str), **_typed(options, _SPEAK_OPTIONS))
    return SpeakStep(text, origin=origin, **options)


def clone(text: str, *, ref_audio: str, **options: Any) -> CloneStep:
    """A voice-clone step; options: ref_text, service, x_vector_only, stream."""
    origin = _caller()
    _require(origin, "clone", text=(text, str), ref_audio=(ref_audio, str),
             **_typed(options, _CLONE_OPTIONS))  # fmt: skip
    return CloneStep(text, ref_audio=ref_audio, origin=origin, **options)


def custom(function: str, *, service: str) -> CustomStep:
    """A custom Python step bound to `service`."""
    origin = _caller()
    _require(origin, "custom", function=(function, str), service=(service, str))
    return CustomStep(function, service=service, origin=origin)


# --- jobs --------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One job: what to run, when, and what to do about missed or overlapping slots."""

    name: str
    steps: tuple[Step, ...]
    schedule: Schedule | None = None  # None: run only on demand
    params: Mapping[str, Any] = field(default_factory=dict)
    misfire: Misfire = "skip"
    grace: timedelta = timedelta(minutes=10)  # run_once: how late a missed slot may still run
    overlap: Overlap = "skip"
    paused: bool = False  # the initial state; `sparkjobs jobs pause` changes it in SQL
    description: str = ""
    stream: bool = True  # False: no speak step starts before the chat before it has ended
    origin: Origin = field(default=Origin("?", 0), compare=False)

    @property
    def kind(self) -> str:
        """The run kind recorded in SQL: the step's kind, or "pipeline"."""
        return self.steps[0].kind if len(self.steps) == 1 else "pipeline"


# The jobs being collected from the job file now executing (a stack: files may nest).
_collecting: list[list[Job]] = []


def job(
    name: str,
    *,
    steps: Step | Sequence[Step],
    schedule: Schedule | None = None,
    params: Mapping[str, Any] | None = None,
    misfire: Misfire = "skip",
    grace: timedelta = timedelta(minutes=10),
    overlap: Overlap = "skip",
    paused: bool = False,
    description: str = "",
    stream: bool = True,
) -> Job:
    """Define a job. Called at the top level of a file in `schedules_dir`.

    Raises:
        JobDefinitionError: naming the file and line, when the definition is
            malformed on its face (no steps, a bad policy name). Checks that
            need the config (unknown service, bad cron) happen at load time.
    """
    origin = _caller()
    _require(
        origin, "job", name=(name, str), schedule=(schedule, (Cron, Every, type(None))),
        grace=(grace, timedelta), paused=(paused, bool), description=(description, str),
        params=(params, (Mapping, type(None))), stream=(stream, bool),
    )  # fmt: skip
    step_list = (steps,) if not isinstance(steps, Sequence | str) else tuple(steps)
    if isinstance(steps, str) or not all(isinstance(s, _STEP_TYPES) for s in step_list):
        raise JobDefinitionError(
            f"{origin}: job {name!r}: steps={steps!r} is not a list of steps; "
            "give steps=[chat(...), speak(...)]"
        )
    if params is not None and not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise JobDefinitionError(
            f"{origin}: job {name!r}: params keys must be names (templates read them as "
            f"{{params.NAME}}), not {sorted(map(repr, params))}"
        )
    if grace < timedelta(0):
        raise JobDefinitionError(f"{origin}: job {name!r}: grace={grace!r} must not be negative")
    if not step_list:
        raise JobDefinitionError(f"{origin}: job {name!r} has no steps; give steps=[chat(...)]")
    if misfire not in ("skip", "run_once"):
        raise JobDefinitionError(f"{origin}: misfire={misfire!r}; use 'skip' or 'run_once'")
    if overlap not in ("skip", "queue"):
        raise JobDefinitionError(f"{origin}: overlap={overlap!r}; use 'skip' or 'queue'")
    defined = Job(
        name=name,
        steps=step_list,
        schedule=schedule,
        params=dict(params or {}),
        misfire=misfire,
        grace=grace,
        overlap=overlap,
        paused=paused,
        description=description,
        stream=stream,
        origin=origin,
    )
    if _collecting:
        _collecting[-1].append(defined)
    return defined


_STEP_TYPES = (ChatStep, SpeakStep, CloneStep, CustomStep)
_OPTIONAL_STR = (str, type(None))
_CHAT_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "service": _OPTIONAL_STR, "model": _OPTIONAL_STR, "system": _OPTIONAL_STR,
    "max_tokens": (int, type(None)), "temperature": (int, float, type(None)),
    "stream_tokens": bool,
}  # fmt: skip
_SPEAK_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "service": _OPTIONAL_STR, "voice": _OPTIONAL_STR, "stream": bool,
}  # fmt: skip
_CLONE_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "service": _OPTIONAL_STR, "ref_text": _OPTIONAL_STR, "x_vector_only": bool, "stream": bool,
}  # fmt: skip


def _typed(
    options: Mapping[str, Any], types: Mapping[str, type | tuple[type, ...]]
) -> dict[str, tuple[Any, type | tuple[type, ...]]]:
    """Options paired with the types they must have (unknown ones are left to the caller)."""
    return {name: (value, types[name]) for name, value in options.items() if name in types}


def _require(origin: Origin, call: str, **values: tuple[Any, type | tuple[type, ...]]) -> None:
    """Raise JobDefinitionError naming the first argument of `call` that has the wrong type."""
    for name, (value, types) in values.items():
        wanted = types if isinstance(types, tuple) else (types,)
        # bool is an int to Python, never to a person writing max_tokens=True.
        wrong_bool = isinstance(value, bool) and bool not in wanted
        if wrong_bool or not isinstance(value, wanted):
            kinds = " or ".join("None" if t is type(None) else t.__name__ for t in wanted)
            raise JobDefinitionError(
                f"{origin}: {call}({name}={value!r:.60}) must be {kinds}, "
                f"not {type(value).__name__}"
            )


@contextmanager
def collecting() -> Iterator[list[Job]]:
    """Collect the jobs that `job(...)` defines while a job file is executed."""
    found: list[Job] = []
    _collecting.append(found)
    try:
        yield found
    finally:
        _collecting.pop()
