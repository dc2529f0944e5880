"""Joining speech pieces: every frame kept, seams faded to meet without a click."""

from __future__ import annotations

import math
from array import array

import pytest

from sparkjobs.backends.audio import encode_wav, parse_wav, wav_header
from sparkjobs.errors import BadAudio
from sparkjobs.execution.wavjoin import join_wavs

RATE = 24000


def tone(frames: int, *, hz: float = 220.0, phase: float = 0.0, amplitude: int = 12000) -> bytes:
    samples = array("h", (
        int(amplitude * math.sin(phase + 2 * math.pi * hz * n / RATE)) for n in range(frames)
    ))  # fmt: skip
    return encode_wav(samples.tobytes(), RATE)


def samples_of(wav: bytes) -> array[int]:
    info = parse_wav(wav)
    out = array("h")
    out.frombytes(wav[info.data_offset : info.data_offset + info.frames * 2])
    return out


def max_step(samples: array[int], start: int, stop: int) -> int:
    return max(abs(samples[i] - samples[i - 1]) for i in range(start, stop))


def test_joined_audio_has_exactly_the_frames_of_its_pieces() -> None:
    pieces = [tone(1000), tone(2345, hz=300), tone(777, hz=150)]
    joined = join_wavs(pieces)
    assert joined.info.frames == 1000 + 2345 + 777
    assert parse_wav(joined.wav).frames == joined.info.frames
    assert joined.duration_s == pytest.approx((1000 + 2345 + 777) / RATE)


def test_seams_meet_near_zero_without_a_jump() -> None:
    # Each piece is cut at a peak: a plain concatenation jumps by ~24000 there.
    peak = math.pi / 2
    pieces = [tone(1200, phase=peak), tone(1500, phase=-peak, hz=180), tone(900, phase=peak)]
    plain = samples_of(encode_wav(b"".join(samples_of(p).tobytes() for p in pieces), RATE))
    joined = samples_of(join_wavs(pieces).wav)
    seams = [1200, 2700]
    signal_step = max_step(samples_of(pieces[0]), 1, 1200)  # the tone's own steepest step
    for seam in seams:
        assert abs(plain[seam] - plain[seam - 1]) > 10 * signal_step  # the click we avoid
        assert abs(joined[seam - 1]) <= 1
        assert abs(joined[seam]) <= 1
        assert max_step(joined, seam - 300, seam + 300) <= signal_step + 1


def test_audio_away_from_seams_is_untouched() -> None:
    pieces = [tone(2000), tone(2000, hz=330)]
    joined = samples_of(join_wavs(pieces).wav)
    assert joined[500:1500] == samples_of(pieces[0])[500:1500]
    assert joined[2500:3500] == samples_of(pieces[1])[500:1500]


def test_first_and_last_edges_are_not_faded() -> None:
    pieces = [tone(1000, phase=math.pi / 2), tone(1000, phase=math.pi / 2)]
    joined = samples_of(join_wavs(pieces).wav)
    assert joined[0] == samples_of(pieces[0])[0]
    assert joined[-1] == samples_of(pieces[1])[-1]


def test_a_single_piece_comes_back_unchanged() -> None:
    piece = tone(1234)
    assert join_wavs([piece]).wav == piece


def test_pieces_of_different_formats_are_refused_naming_the_piece() -> None:
    other = wav_header(200, sample_rate=22050) + bytes(200)
    with pytest.raises(BadAudio, match=r"piece 1 is 22050 Hz.*piece 0 is 24000 Hz"):
        join_wavs([tone(100), other])


def test_nothing_to_join_is_an_error() -> None:
    with pytest.raises(BadAudio, match="no pieces"):
        join_wavs([])


def test_tiny_pieces_are_faded_within_their_own_length() -> None:
    joined = join_wavs([tone(10, phase=1.0), tone(3, phase=1.0), tone(10, phase=1.0)])
    assert joined.info.frames == 23
