"""Ad-hoc work: one-step jobs built from a text, a prompt or a reference voice, checked.

`sparkjobs submit`, the run page and the API build their jobs here and hand them to
`submit_job(..., trigger="submit")`. Every builder checks the job against the config
first (service, its kind, voice, model), so bad input is refused, naming the valid
values, before anything is written or queued. Texts are taken literally: braces in
them are not template fields.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from sparkjobs.backends.orpheus import ORPHEUS_VOICES
from sparkjobs.config import LLM_KINDS
from sparkjobs.errors import BadInput, UnknownService
from sparkjobs.jobs.check import check_job
from sparkjobs.jobs.define import ChatStep, CloneStep, Job, Origin, SpeakStep, Step

if TYPE_CHECKING:
    from sparkjobs.config import Config

ORIGIN = Origin("<submit>", 0)


def literal(text: str) -> str:
    """`text` as a template that renders to exactly `text`."""
    return text.replace("{", "{{").replace("}", "}}")


def speak_job(
    config: Config, text: str, *, voice: str | None = None, service: str | None = None
) -> Job:
    """A job that reads `text` aloud on an Orpheus service (long text is split in pieces).

    Raises:
        BadInput: empty text; UnknownService (the known ones listed); a service that
            is not a TTS of kind orpheus; a voice the service does not offer (listed).
    """
    _require_text(text, "text to speak")
    step = SpeakStep(literal(text), service=service, voice=voice, origin=ORIGIN)
    job = _checked(config, Job("speak", (step,), origin=ORIGIN), step)
    if voice is not None:
        chosen = config.services[_service_of(config, step)]
        _one_of("voice", voice, chosen.voices or ORPHEUS_VOICES, _service_of(config, step))
    return job


def clone_job(
    config: Config,
    text: str,
    *,
    ref_audio: str,
    ref_text: str | None = None,
    service: str | None = None,
) -> Job:
    """A job that speaks `text` in the voice of a reference recording.

    Args:
        ref_audio: the reference's artifact sha256 (`put_reference` stores a file).
        ref_text: what the reference says, if known (improves the clone).

    Raises:
        BadInput: empty text, a `ref_audio` that is not a sha256, an unknown service
            or one that is not of kind qwen-clone.
    """
    from sparkjobs.artifacts.locate import check_sha256

    _require_text(text, "text to speak")
    step = CloneStep(
        literal(text), ref_audio=check_sha256(ref_audio), ref_text=ref_text or None,
        service=service, origin=ORIGIN,
    )  # fmt: skip
    return _checked(config, Job("clone", (step,), origin=ORIGIN), step)


def chat_job(
    config: Config,
    prompt: str,
    *,
    service: str | None = None,
    model: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream_tokens: bool = False,
) -> Job:
    """A job that asks an LLM service `prompt`; its reply is the run's text.

    Args:
        service: the LLM service; with only `model` given, the one that serves it.
        stream_tokens: the worker publishes the reply's pieces as they arrive
            (`sparkjobs.broker.tokens.follow_tokens` reads them).

    Raises:
        BadInput: empty prompt, max_tokens below 1, an unknown service or model (the
            known ones listed), a service that is not an LLM.
    """
    _require_text(prompt, "prompt")
    if max_tokens is not None and max_tokens < 1:
        raise BadInput(f"max_tokens must be at least 1, not {max_tokens}")
    if service is None and model is not None:
        service = service_for_model(config, model)
    step = ChatStep(
        literal(prompt), service=service, model=model,
        system=literal(system) if system else None, max_tokens=max_tokens,
        temperature=temperature, stream_tokens=stream_tokens, origin=ORIGIN,
    )  # fmt: skip
    return _checked(config, Job("chat", (step,), origin=ORIGIN), step)


def service_for_model(config: Config, model: str) -> str:
    """The LLM service whose configured models include `model`.

    Raises:
        BadInput: no LLM service lists it; the message lists every model by service.
    """
    llms = {name: s for name, s in config.services.items() if s.kind in LLM_KINDS}
    for name, found in llms.items():
        if model in found.models:
            return name
    known = "; ".join(f"{name}: {', '.join(s.models) or '(any)'}" for name, s in llms.items())
    raise BadInput(f"unknown model {model!r}; known models by service: {known or 'none'}")


def check_reference(path: Path) -> float:
    """Check that `path` is a readable, non-empty PCM WAV; its length in seconds.

    Raises:
        BadInput: the file cannot be read, or is not a WAV with audio in it.
    """
    from sparkjobs.backends.audio import parse_wav
    from sparkjobs.errors import BadAudio

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(
            f"cannot read the reference audio {path}: {exc.strerror}; name a readable WAV file"
        ) from exc
    try:
        info = parse_wav(data)
    except BadAudio as exc:
        raise BadInput(f"reference audio {path} is not a WAV file: {exc}") from exc
    if info.frames == 0:
        raise BadInput(f"reference audio {path} holds no audio (0 frames); record a few seconds")
    return info.duration_s


def put_reference(config: Config, path: Path, *, service: str | None = None) -> str:
    """Check a reference WAV and store it on the node of the clone service; its sha256.

    The worker of that node then reads it from its own store (or pulls it over the
    bond); the bytes never travel through the broker.

    Raises:
        BadInput: as `check_reference`; UnknownService.
        ArtifactUnavailable: that node's artifact server did not answer.
    """
    from sparkjobs.artifacts.client import put_file
    from sparkjobs.config.routing import default_service

    check_reference(path)
    name = service or default_service(config, frozenset({"qwen-clone"}))
    if name not in config.services:
        raise UnknownService(f"unknown service {name!r}; known: {', '.join(config.services)}")
    stored = put_file(config, path, config.services[name].node, media_type="audio/wav")
    return str(stored["sha256"])


def _require_text(text: str, what: str) -> None:
    if not text.strip():
        raise BadInput(f"the {what} is empty; give some text (or `-` to read it from stdin)")


def _service_of(config: Config, step: Step) -> str:
    from sparkjobs.jobs.check import resolve_service

    return resolve_service(config, step)


def _one_of(what: str, value: str, known: tuple[str, ...], service: str) -> None:
    if value in known:
        return
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise BadInput(
        f"unknown {what} {value!r} on service {service!r}; {hint}known: {', '.join(known)}"
    )


def _checked(config: Config, job: Job, step: Step) -> Job:
    """`job` if it passes the job checks; else BadInput with the first problem, plainly."""
    try:
        problems = check_job(config, job)
    except UnknownService as exc:
        raise BadInput(str(exc).removeprefix(f"{ORIGIN}: ")) from exc
    if problems:
        where = f"{ORIGIN}: job {job.name!r}, step 1 ({step.kind}): "
        raise BadInput("; ".join(problem.removeprefix(where) for problem in problems))
    return job
