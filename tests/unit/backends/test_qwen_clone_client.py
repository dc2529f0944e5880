"""sparkjobs' Qwen3-TTS clone client: reference voices, named voices, streaming, errors."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from sparkjobs.backends import QwenCloneClient, Reference
from sparkjobs.backends.audio import encode_wav
from sparkjobs.errors import BadAudio, BadInput, PermanentError, UnknownVoice
from tests.support.sim import RunningSims, StartSims, sim_config

TEXT = "This is my voice, reading the evening summary."
REF_WAV = encode_wav(bytes(24000 * 2 * 3))


def test_a_reference_voice_is_sent_in_the_vllm_omni_shape() -> None:
    sent: list[dict[str, object]] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=encode_wav(bytes(24000 * 2 * 3)))

    service = sim_config().services["clone"]
    transport = httpx.MockTransport(server)
    with QwenCloneClient(service, name="clone", transport=transport) as client:
        client.speak(TEXT, reference=Reference(REF_WAV, "the transcript"), stream=False)
    body = sent[0]
    assert body["ref_audio"] == "data:audio/wav;base64," + base64.b64encode(REF_WAV).decode()
    assert (body["ref_text"], body["x_vector_only_mode"]) == ("the transcript", False)
    assert (body["input"], body["task_type"], body["stream"]) == (TEXT, "Base", False)
    assert "voice" not in body


def test_cloned_speech_streams_in_chunks_at_24khz(sims: RunningSims) -> None:
    chunks: list[bytes] = []
    client: QwenCloneClient = sims.client("clone")
    result = client.speak(TEXT, reference=Reference(REF_WAV, "hello"), on_audio=chunks.append)
    assert len(chunks) > 1
    assert result.info.sample_rate == 24000
    assert result.timings.audio_s == pytest.approx(result.info.duration_s)
    assert result.timings.ttft_ms is not None


def test_x_vector_only_needs_no_transcript(sims: RunningSims) -> None:
    reference = Reference(REF_WAV)
    assert reference.fields()["x_vector_only_mode"] is True
    assert sims.client("clone").speak(TEXT, reference=reference, stream=False).info.frames > 0


def test_a_named_server_voice_speaks(sims: RunningSims) -> None:
    assert sims.client("clone").speak(TEXT, voice="default").info.frames > 0


def test_an_unknown_named_voice_is_permanent(sims: RunningSims) -> None:
    with pytest.raises(UnknownVoice):
        sims.client("clone").speak(TEXT, voice="vivian")  # refused by the config
    with pytest.raises(UnknownVoice, match="Unsupported voice"):
        sims.client("clone", voices=()).speak(TEXT, voice="vivian")  # refused by the server


def test_in_context_cloning_without_a_transcript_is_permanent(sims: RunningSims) -> None:
    reference = Reference(REF_WAV, None, x_vector_only=False)
    fields = {**reference.fields(), "x_vector_only_mode": False}
    reply = httpx.post(f"{sims.url('clone')}/v1/audio/speech", json={"input": TEXT, **fields})
    assert reply.status_code == 400
    assert "ref_text is required" in reply.json()["error"]["message"]


def test_a_reference_that_is_not_a_wav_is_bad_input() -> None:
    with pytest.raises(BadInput, match="not a WAV"):
        Reference(b"ID3 an mp3").fields()


def test_a_bad_request_is_permanent(sims: RunningSims) -> None:
    with pytest.raises(PermanentError, match="input"):
        sims.client("clone").speak("", stream=False)


def test_an_empty_wav_with_200_is_retryable(start_sims: StartSims) -> None:
    with pytest.raises(BadAudio, match="empty WAV"):
        start_sims(empty_wav=True).client("clone").speak(TEXT)
