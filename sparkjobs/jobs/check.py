"""Checking a job against the cluster config, and the service each of its steps uses.

The loader, the scheduler, `sparkjobs jobs` and submission call these, so a job
that names a service, voice or template field the cluster does not have is refused
with its file, line and the fix, before anything is queued.
"""

from __future__ import annotations

import difflib
import importlib
import re
import string
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sparkjobs.config import LLM_KINDS
from sparkjobs.config.routing import default_service
from sparkjobs.errors import UnknownService
from sparkjobs.jobs.crontab import CronError, UnknownTimeZone, parse_cron, zone
from sparkjobs.jobs.define import ChatStep, CloneStep, Cron, CustomStep, Every, Job, SpeakStep, Step

if TYPE_CHECKING:
    from sparkjobs.config import Config

# The service kinds each step kind can run on (custom steps run on any).
STEP_KINDS: dict[str, frozenset[str]] = {
    "chat": LLM_KINDS,
    "speak": frozenset({"orpheus"}),
    "clone": frozenset({"qwen-clone"}),
}
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def resolve_service(config: Config, step: Step) -> str:
    """The service a step runs on: its own, else the default of its kind.

    chat -> the default among kinds openai/ollama, speak -> orpheus, clone ->
    qwen-clone (see `sparkjobs.config.routing.default_service`); custom steps name theirs.

    Raises:
        UnknownService: the step names a service the config does not define, or no
            service of its kind exists; the message names the step's file and line.
    """
    if step.service is not None:
        if step.service not in config.services:
            raise UnknownService(f"{step.origin}: {_unknown_service(config, step.service)}")
        return step.service
    try:
        return default_service(config, STEP_KINDS[step.kind])
    except UnknownService as exc:
        raise UnknownService(f"{step.origin}: {step.kind} step: {exc}") from exc


def check_job(config: Config, job: Job) -> list[str]:
    """Everything wrong with `job` under `config`; empty when it can run.

    Each problem names the file and line it comes from and how to fix it.
    """
    problems: list[str] = []
    if not JOB_NAME.match(job.name):
        problems.append(
            f"{job.origin}: job name {job.name!r} is not valid; use letters, digits, "
            "'.', '_' and '-' (e.g. morning-briefing)"
        )
    problems += _check_schedule(job)
    for index, step in enumerate(job.steps):
        problems += _check_step(config, job, index, step)
    return problems


def _check_schedule(job: Job) -> list[str]:
    schedule = job.schedule
    if isinstance(schedule, Cron):
        problems = []
        for check in (lambda: parse_cron(schedule.expression), lambda: zone(schedule.tz)):
            try:
                check()
            except (CronError, UnknownTimeZone) as exc:
                problems.append(f"{job.origin}: job {job.name!r}: {exc}")
        return problems
    if isinstance(schedule, Every) and schedule.interval.total_seconds() < 1:
        return [f"{job.origin}: job {job.name!r}: every(...) must be at least 1 second"]
    if schedule is not None and not isinstance(schedule, Cron | Every):
        return [
            f"{job.origin}: job {job.name!r}: schedule={schedule!r} is not a schedule; "
            "use cron('0 7 * * *', tz='Europe/Berlin') or every(hours=1)"
        ]
    return []


def _check_step(config: Config, job: Job, index: int, step: Step) -> list[str]:
    where = f"{step.origin}: job {job.name!r}, step {index + 1} ({step.kind})"
    try:
        name = resolve_service(config, step)
    except UnknownService as exc:
        return [f"{where}: {str(exc).removeprefix(f'{step.origin}: ')}"]
    service = config.services[name]
    wanted = STEP_KINDS.get(step.kind)
    if wanted is not None and service.kind not in wanted:
        fitting = sorted(n for n, s in config.services.items() if s.kind in wanted) or ["none"]
        return [
            f"{where}: service {name!r} is a {service.kind} server and cannot {step.kind}; "
            f"use a service of kind {' or '.join(sorted(wanted))}: {', '.join(fitting)}"
        ]
    problems: list[str] = []
    if isinstance(step, ChatStep) and step.model and service.models:
        problems += _unknown(where, "model", step.model, service.models, name)
    if isinstance(step, SpeakStep) and step.voice and service.voices:
        problems += _unknown(where, "voice", step.voice, service.voices, name)
    if isinstance(step, CloneStep):
        problems += _check_reference(where, step)
    if isinstance(step, CustomStep):
        problems += _check_function(config, where, step.function)
    for field, template in _templates(step):
        problems += _check_template(where, field, template, job, index)
    return problems


def _unknown(where: str, what: str, value: str, known: tuple[str, ...], service: str) -> list[str]:
    if value in known:
        return []
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return [
        f"{where}: unknown {what} {value!r} on service {service!r}; {hint}known: {', '.join(known)}"
    ]


def _unknown_service(config: Config, name: str) -> str:
    known = sorted(config.services)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"unknown service {name!r}; {hint}known: {', '.join(known) or 'none'} "
        f"(defined under [services] in {config.source})"
    )


def _check_reference(where: str, step: CloneStep) -> list[str]:
    if _SHA256.match(step.ref_audio):
        return []
    path = Path(step.origin.file).parent / step.ref_audio
    if path.is_file():
        return []
    return [
        f"{where}: ref_audio {step.ref_audio!r} is not a file next to the job file "
        f"({path}) nor an artifact sha256; put the WAV there or use `sparkjobs artifacts put`"
    ]


def _check_function(config: Config, where: str, dotted: str) -> list[str]:
    from sparkjobs.jobs.importing import ensure_importable

    module_name, _, attribute = dotted.partition(":")
    if not module_name or not attribute:
        return [f"{where}: custom function {dotted!r} must read 'package.module:function'"]
    ensure_importable(config)
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # any import failure is the user's to fix
        return [
            f"{where}: custom function {dotted!r} is not importable ({type(exc).__name__}: "
            f"{exc}); it must live under {config.schedules_dir.parent} as a dotted path"
        ]
    if not callable(function):
        return [f"{where}: custom function {dotted!r} is not callable"]
    return []


def _templates(step: Step) -> list[tuple[str, str]]:
    if isinstance(step, ChatStep):
        return [("prompt", step.prompt)] + ([("system", step.system)] if step.system else [])
    if isinstance(step, SpeakStep | CloneStep):
        return [("text", step.text)]
    return []


def _check_template(where: str, field: str, template: str, job: Job, index: int) -> list[str]:
    """Check field names first (for a precise message), then format once with samples."""
    allowed = "{slot}, {params.NAME}" + (", {previous}, {outputs[i]}" if index else "")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"{where}: {field} is not a valid template ({exc}); write {{{{ for a literal {{"]
    for name in fields:
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root not in ("slot", "params", "previous", "outputs") or (
            index == 0 and root in ("previous", "outputs")
        ):
            return [f"{where}: {field} uses {{{name}}}, which does not exist; use {allowed}"]
        if root == "params":
            key = name.removeprefix("params.").split(".")[0].split("[")[0]
            if not name.startswith("params.") or key not in job.params:
                known = ", ".join(sorted(job.params)) or "none (add params={...} to job())"
                return [f"{where}: {field} uses {{{name}}}, but the job's params are: {known}"]
    sample: dict[str, Any] = {
        "slot": datetime(2026, 1, 1, 7, tzinfo=UTC),
        "params": SimpleNamespace(**job.params),
        "previous": "text",
        "outputs": ["text"] * index,
    }
    try:
        template.format(**sample)
    except Exception as exc:  # e.g. a format spec that does not fit
        return [f"{where}: {field} cannot be filled in ({type(exc).__name__}: {exc})"]
    return []
