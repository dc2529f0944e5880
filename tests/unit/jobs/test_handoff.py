"""Which speak steps start on the chat before them while it generates, and why not."""

from __future__ import annotations

import pytest

from sparkjobs.jobs.define import chat, clone, custom, job, speak
from sparkjobs.jobs.handoff import Handoff, handoffs, reads_reply_whole
from sparkjobs.runs.plan import plan_job
from tests.support.sim import sim_config


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{previous}", None),
        ("Here is the news for {slot:%A}. {previous}", None),
        ("{previous} That was the news.", None),  # text after the reply: said at its end
        ("{outputs[1]}", None),
        ("{outputs[-1]}", None),
        ("{outputs[0]} then {previous}", None),  # an earlier step's output is known
        ("{previous} and again {previous}", "its text reads the chat's reply more than once"),
        ("{previous:.200}", "its text reads the reply through {previous:.200}"),
        ("{previous!r}", "its text reads the reply through {previous!r}"),
        ("Good morning.", "its text does not read the chat's reply ({previous})"),
        ("{previous", "its text is not a valid template"),
    ],
)  # fmt: skip
def test_a_template_streams_when_it_reads_the_reply_once_and_as_it_is(
    template: str, why: str | None
) -> None:
    assert reads_reply_whole(template, 2) == why


def test_only_a_speak_step_right_after_a_chat_is_handed_the_reply() -> None:
    defined = job("j", steps=[
        speak("Hello."), chat("Hi"), speak("{previous}"),
        custom("m:f", service="gemma"), speak("{previous}"),
    ])  # fmt: skip
    assert handoffs(defined) == [Handoff(2, True)]


def test_a_clone_step_after_a_chat_is_handed_the_reply_too() -> None:
    defined = job("j", steps=[chat("Hi"), clone("{previous}", ref_audio="me.wav")])
    assert handoffs(defined) == [Handoff(1, True)]
    off = job("j", steps=[chat("Hi"), clone("{previous}", ref_audio="me.wav", stream=False)])
    assert handoffs(off) == [Handoff(1, False, "the step says stream=False")]


def test_stream_false_on_the_step_or_the_job_says_so() -> None:
    off = job("j", steps=[chat("Hi"), speak("{previous}", stream=False)])
    assert handoffs(off) == [Handoff(1, False, "the step says stream=False")]
    quiet = job("q", stream=False, steps=[chat("Hi"), speak("{previous}")])
    assert [h.label for h in handoffs(quiet)] == ["batch: the job says stream=False"]


def test_the_plan_marks_the_chat_that_streams_and_the_speak_step_it_feeds() -> None:
    example_config = sim_config()
    plans = plan_job(example_config, job("j", steps=[chat("Hi"), speak("{previous}")]))
    assert plans[0].spec["speech_handoff"] is True
    assert plans[1].spec["handoff"] == "streamed"
    batch = plan_job(example_config, job("b", steps=[chat("Hi"), speak("{previous!s}")]))
    assert batch[0].spec["speech_handoff"] is False
    assert batch[1].spec["handoff"].startswith("batch: ")
