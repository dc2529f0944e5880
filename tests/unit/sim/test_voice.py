"""Simulated audio: length as asked, a voice of its own, espeak-ng when installed."""

from __future__ import annotations

import shutil

import pytest

from sparkjobs.sim.voice import speech_seconds, synthesize


def test_the_audio_has_the_requested_length_and_differs_by_voice() -> None:
    tara = synthesize("Hello there", "tara", 48000)
    leo = synthesize("Hello there", "leo", 48000)
    assert len(tara) == len(leo) == 96000
    assert tara != leo
    assert any(tara)


def test_emotion_tags_take_time_to_read() -> None:
    assert speech_seconds("Hello <laugh> there") > speech_seconds("Hello there")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_ng_speaks_when_installed() -> None:
    pcm = synthesize("Hello there", "tara", 24000)
    assert len(pcm) == 48000
    assert any(pcm)
