"""WAV parsing, streamed WAVs of unknown size, and the validation of returned speech."""

from __future__ import annotations

import io
import struct
import wave

import pytest

from sparkjobs.backends.audio import (
    HEADER_BYTES,
    ProgressiveWav,
    WavStream,
    encode_wav,
    parse_wav,
    validate_speech,
    wav_header,
)
from sparkjobs.errors import BadAudio, RetryableError

TEXT = "Good morning. Here is the weather for today."


def _pcm(seconds: float) -> bytes:
    return struct.pack("<h", 1000) * int(24000 * seconds)


def test_a_wav_header_round_trips_through_parse() -> None:
    info = parse_wav(encode_wav(_pcm(1.5)))
    assert (info.sample_rate, info.channels, info.sample_width) == (24000, 1, 2)
    assert info.frames == 36000
    assert info.duration_s == pytest.approx(1.5)


@pytest.mark.parametrize("declared", [None, 0])
def test_a_streamed_wav_of_unknown_size_is_read_chunk_by_chunk(declared: int | None) -> None:
    pcm = _pcm(1.0)
    data = wav_header(declared) + pcm
    stream = WavStream()
    out = b"".join(stream.feed(data[i : i + 7]) for i in range(0, len(data), 7))
    assert out == pcm
    assert parse_wav(stream.finish()).frames == 24000


def test_an_empty_wav_is_bad_audio_and_retryable() -> None:
    with pytest.raises(BadAudio, match="empty WAV") as caught:
        validate_speech(encode_wav(b""), TEXT)
    assert isinstance(caught.value, RetryableError)


@pytest.mark.parametrize("data", [b"", b"<html>error</html>", b"RIFF\x00\x00\x00\x00WAVE"])
def test_bytes_that_are_not_a_wav_are_bad_audio(data: bytes) -> None:
    with pytest.raises(BadAudio):
        validate_speech(data, TEXT)


def test_audio_far_too_short_for_the_text_is_bad_audio() -> None:
    with pytest.raises(BadAudio, match="truncated or runaway"):
        validate_speech(encode_wav(_pcm(0.05)), TEXT * 5)


def test_a_wrong_sample_rate_is_bad_audio() -> None:
    with pytest.raises(BadAudio, match="expected 24000 Hz"):
        validate_speech(wav_header(48000, sample_rate=22050) + _pcm(1.0), TEXT)


def test_speech_of_plausible_length_is_accepted() -> None:
    assert validate_speech(encode_wav(_pcm(3.0)), TEXT).duration_s == pytest.approx(3.0)


class _Pipe(io.BytesIO):
    """A sink that cannot seek back, as stdout or a player's pipe."""

    def seekable(self) -> bool:
        return False


PIECES = [bytes(range(256)) * 3, b"\x01\x02" * 500, b"\x7f\x00" * 1200]


def test_a_progressive_wav_file_is_a_valid_wav_after_every_piece_and_whole_at_the_end() -> None:
    out = io.BytesIO()
    writer = ProgressiveWav(out)
    assert parse_wav(out.getvalue()).frames == 0
    written = b""
    for pcm in PIECES:
        writer.append(pcm)
        written += pcm
        with wave.open(io.BytesIO(out.getvalue())) as reader:  # the standard library agrees
            assert reader.readframes(reader.getnframes()) == written
    assert out.getvalue() == encode_wav(written)


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "pipe"])
def test_a_progressive_wav_cut_at_any_byte_past_its_header_reads_as_what_arrived(
    seekable: bool,
) -> None:
    out: io.BytesIO = io.BytesIO() if seekable else _Pipe()
    writer = ProgressiveWav(out)
    for pcm in PIECES:
        writer.append(pcm)
    data = out.getvalue()
    for cut in range(HEADER_BYTES, len(data) + 1):
        info = parse_wav(data[:cut])
        assert info.frames == (cut - HEADER_BYTES) // 2  # every whole sample that arrived
