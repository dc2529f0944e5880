"""The Orpheus simulator keeps the real front-end's quirks."""

from __future__ import annotations

import json

import httpx

from sparkjobs.backends.audio import parse_wav
from tests.support.sim import RunningSims, StartSims

SPEECH = {"model": "orpheus", "input": "Hello there, how are you?", "voice": "tara",
          "response_format": "wav"}  # fmt: skip


def test_orpheus_backend_down_answers_200_with_an_empty_wav(start_sims: StartSims) -> None:
    sims = start_sims(backend_down=True)
    reply = httpx.post(f"{sims.url('orpheus')}/v1/audio/speech", json=SPEECH)
    assert reply.status_code == 200
    assert len(reply.content) == 44
    assert parse_wav(reply.content).frames == 0


def test_orpheus_reads_an_unknown_voice_as_tara(sims: RunningSims) -> None:
    reply = httpx.post(f"{sims.url('orpheus')}/v1/audio/speech", json={**SPEECH, "voice": "bob"})
    assert reply.status_code == 200
    assert parse_wav(reply.content).frames > 0
    assert 'filename="tara_' in reply.headers["content-disposition"]


def test_orpheus_lists_its_voices(sims: RunningSims) -> None:
    reply = httpx.get(f"{sims.url('orpheus')}/v1/audio/voices").json()
    assert reply == {"status": "ok", "voices": ["tara", "leah", "jess", "leo", "dan", "mia",
                                                "zac", "zoe"]}  # fmt: skip


def test_orpheus_refuses_missing_input_in_fastapis_shape(sims: RunningSims) -> None:
    reply = httpx.post(f"{sims.url('orpheus')}/v1/audio/speech", json={"voice": "tara"})
    assert (reply.status_code, reply.json()) == (400, {"detail": "Missing input text"})


def test_the_backend_streams_seven_audio_codes_per_frame(sims: RunningSims) -> None:
    body = {"prompt": "<|audio|>tara: Hello there.<|eot_id|>", "stream": True, "model": "x"}
    reply = httpx.post(f"{sims.url('orpheus-backend')}/v1/completions", json=body)
    lines = [line[6:] for line in reply.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    texts = [json.loads(line)["choices"][0]["text"] for line in lines[:-1]]
    assert all(t.startswith("<custom_token_") for t in texts)
    assert len(texts) % 7 == 0
