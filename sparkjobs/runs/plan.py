"""From a job's steps to what SQL stores for each: service, node and a JSON spec.

The spec is the step as defined (kind, prompt or text, voice, model...) plus the
job's time zone, so a worker rebuilds everything from SQL and a message needs only
ids. Services are resolved here, at submit time: an unknown service, or one of the
wrong kind for its step, is refused before anything is written or queued.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkjobs.config.routing import default_service, service
from sparkjobs.config.values import LLM_KINDS
from sparkjobs.errors import BadInput
from sparkjobs.jobs.define import CloneStep, Cron, Job, Step
from sparkjobs.jobs.handoff import handoffs

if TYPE_CHECKING:
    from sparkjobs.config import Config

# Which kinds of service can run each kind of step (a custom step takes any).
STEP_SERVICE_KINDS: dict[str, frozenset[str]] = {
    "chat": LLM_KINDS,
    "speak": frozenset({"orpheus"}),
    "clone": frozenset({"qwen-clone"}),
}


@dataclass(frozen=True)
class StepPlan:
    """One step of a run as it is written to SQL."""

    index: int
    kind: str
    service: str
    node: str
    spec: dict[str, Any]


def resolve_service(config: Config, step: Step) -> str:
    """The step's service: the one it names, else the default for its kind.

    Uses `sparkjobs.jobs.check.resolve_service` when that module exists, so that
    checking and running a job agree; this fallback follows the same rule.
    """
    try:
        checker: Any = importlib.import_module("sparkjobs.jobs.check")
    except ImportError:
        checker = None
    if checker is not None:
        return str(checker.resolve_service(config, step))
    if step.service:
        return step.service
    return default_service(config, STEP_SERVICE_KINDS[step.kind])


def plan_job(config: Config, job: Job) -> list[StepPlan]:
    """The plans of every step of `job`, services resolved and checked.

    Raises:
        UnknownService: a step names a service the config does not define.
        BadInput: a step's service is of the wrong kind for the step.
    """
    tz = job.schedule.tz if isinstance(job.schedule, Cron) else "UTC"
    plans = []
    for index, step in enumerate(job.steps):
        name = resolve_service(config, step)
        found = service(config, name)
        allowed = STEP_SERVICE_KINDS.get(step.kind)
        if allowed is not None and found.kind not in allowed:
            raise BadInput(
                f"{step.origin}: step {index} ({step.kind}) of job {job.name!r} uses service "
                f"{name!r} of kind {found.kind}; a {step.kind} step needs a service of kind "
                f"{' or '.join(sorted(allowed))}"
            )
        plans.append(StepPlan(index, step.kind, name, found.node, step_spec(step, tz)))
    for handoff in handoffs(job):  # how each speak step after a chat receives its reply
        plans[handoff.index].spec["handoff"] = handoff.label
        plans[handoff.index - 1].spec["speech_handoff"] = handoff.streamed
    return plans


def step_spec(step: Step, tz: str) -> dict[str, Any]:
    """The JSON stored with a step: its fields, its origin as text, the job's time zone."""
    spec = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}
    spec["origin"] = str(step.origin)
    spec["tz"] = tz
    if isinstance(step, CloneStep):
        spec["ref_audio"] = _reference(step)
    return spec


def _reference(step: CloneStep) -> str:
    # A path is relative to the job file; the same schedules tree is deployed on
    # every node, so the absolute path is valid where the step runs.
    ref = step.ref_audio
    if _is_sha256(ref) or Path(ref).is_absolute() or step.origin.file == "?":
        return ref
    return str(Path(step.origin.file).parent / ref)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
