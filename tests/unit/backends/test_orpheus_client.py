"""sparkjobs' Orpheus client against the simulated front-end and its backend."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import HttpUrl

from sparkjobs.backends import OrpheusClient
from sparkjobs.backends.audio import encode_wav
from sparkjobs.errors import BadAudio, RetryableError, UnknownVoice
from tests.support.sim import RunningSims, StartSims, sim_config

TEXT = "Good morning! <laugh> The sun is out and the queue is empty."


def test_speech_is_a_24khz_mono_wav_of_plausible_length(sims: RunningSims) -> None:
    client: OrpheusClient = sims.client("orpheus")
    result = client.speak(TEXT, voice="leah")
    assert (result.info.sample_rate, result.info.channels, result.info.sample_width) == (
        24000,
        1,
        2,
    )
    assert result.info.frames % 2048 == 0  # whole SNAC frames
    assert 2.0 < result.timings.audio_s < 10.0  # type: ignore[operator]
    assert result.timings.rtf is not None
    assert result.timings.rtf > 0
    assert result.wav[:4] == b"RIFF"


def test_emotion_tags_are_sent_unchanged() -> None:
    sent: list[dict[str, object]] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=encode_wav(bytes(24000 * 2 * 4)))

    service = sim_config().services["orpheus"]
    with OrpheusClient(service, name="orpheus", transport=httpx.MockTransport(server)) as client:
        client.speak(TEXT, voice="zac")
    assert sent == [{"model": "orpheus", "input": TEXT, "voice": "zac", "response_format": "wav"}]


def test_an_unknown_voice_is_refused_before_orpheus_reads_it_as_tara(sims: RunningSims) -> None:
    with pytest.raises(UnknownVoice, match="tara, leah"):
        sims.client("orpheus").speak(TEXT, voice="bob")
    assert sims.stats("orpheus")["requests"] == 0


def test_backend_down_is_a_retryable_bad_audio_error_naming_the_backend(
    start_sims: StartSims,
) -> None:
    sims = start_sims(backend_down=True)
    client: OrpheusClient = sims.client("orpheus")
    with pytest.raises(BadAudio, match=r"empty WAV.*backend") as caught:
        client.speak(TEXT)
    assert isinstance(caught.value, RetryableError)


def test_health_reports_a_down_backend(start_sims: StartSims) -> None:
    sims = start_sims(backend_down=True)
    health = sims.client("orpheus", backend_url=HttpUrl("http://127.0.0.1:9")).health()
    assert not health.ok
    assert "backend" in health.problems[0]
    assert sims.client("orpheus").list_voices()[0] == "tara"


def test_health_is_ok_with_its_backend_up(sims: RunningSims) -> None:
    assert sims.client("orpheus").health().ok


def test_streamed_speech_is_read_as_it_arrives(sims: RunningSims) -> None:
    chunks: list[bytes] = []
    result = sims.client("orpheus").speak(TEXT, stream=True, on_audio=chunks.append)
    assert len(chunks) > 1
    assert b"".join(chunks) == result.pcm
    assert result.timings.ttft_ms is not None
    assert result.timings.ttft_ms <= result.timings.wall_ms


def test_a_stream_cut_mid_audio_is_retryable(start_sims: StartSims) -> None:
    client = start_sims(midstream_error_rate=1.0).client("orpheus")
    with pytest.raises(RetryableError):
        client.speak(TEXT, stream=True)


def test_an_empty_wav_with_200_is_retryable(start_sims: StartSims) -> None:
    with pytest.raises(BadAudio, match="empty WAV"):
        start_sims(empty_wav=True).client("orpheus").speak(TEXT)
