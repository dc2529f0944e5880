"""Which speak steps start on the chat before them while it still generates, and why not.

A speak (or clone) step right after a chat step streams from it when its text reads the chat's
reply once, whole and as it is (`{previous}`, or `{outputs[N]}` of the chat), and
neither the step nor the job says `stream=False`. Any other use of the reply (twice,
cut with a format, converted) needs the whole reply first: that step waits for the
chat to finish, as every step did before streaming (batch), and `jobs list` and the
run page say why.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from sparkjobs.jobs.define import ChatStep, CloneStep, Job, SpeakStep

STREAMED = "streamed"


@dataclass(frozen=True)
class Handoff:
    """How speech step `index` receives the chat before it: streamed, or batch and why."""

    index: int
    streamed: bool
    why: str = ""  # batch only: the reason, for `jobs list` and the run page

    @property
    def label(self) -> str:
        return STREAMED if self.streamed else f"batch: {self.why}"


def handoffs(job: Job) -> list[Handoff]:
    """The handoff of every speak step of `job` that follows a chat step."""
    found = []
    for index, step in enumerate(job.steps):
        after_chat = index > 0 and isinstance(job.steps[index - 1], ChatStep)
        if after_chat and isinstance(step, SpeakStep | CloneStep):
            found.append(_handoff(job, step, index))
    return found


def _handoff(job: Job, step: SpeakStep | CloneStep, index: int) -> Handoff:
    if not job.stream:
        return Handoff(index, False, "the job says stream=False")
    if not step.stream:
        return Handoff(index, False, "the step says stream=False")
    why = reads_reply_whole(step.text, index)
    return Handoff(index, why is None, why or "")


def reads_reply_whole(template: str, index: int) -> str | None:
    """Why the template of step `index` needs the previous step's whole text; None if
    it reads that text once and as it is, so the step can start on its first sentence."""
    try:
        fields = [(name, spec, conversion)
                  for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]  # fmt: skip
    except ValueError:
        return "its text is not a valid template"
    uses = [field for field in fields if _reads_previous(field[0], index)]
    if not uses:
        return "its text does not read the chat's reply ({previous})"
    if len(uses) > 1:
        return "its text reads the chat's reply more than once"
    name, spec, conversion = uses[0]
    if name not in ("previous", f"outputs[{index - 1}]", "outputs[-1]") or spec or conversion:
        shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        return f"its text reads the reply through {{{shown}}}"
    return None


def _reads_previous(name: str, index: int) -> bool:
    root = re.split(r"[.\[]", name, maxsplit=1)[0]
    if root == "previous":
        return True
    found = re.match(r"outputs\[(-?\d+)\]", name)
    return root == "outputs" and (found is None or int(found.group(1)) in (index - 1, -1))
