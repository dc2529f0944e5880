"""WAV bytes: the header, parsing (also of streamed WAVs of unknown length), validation.

TTS servers answer 24 kHz mono 16-bit PCM in a RIFF/WAVE container. Streaming servers
send the header first with a data size of 0 or 0xFFFFFFFF ("unknown"), then PCM
chunks; `WavStream` reads that and `finish()` returns a WAV with the true sizes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from sparkjobs.errors import BadAudio

SAMPLE_RATE = 24000
HEADER_BYTES = 44
UNKNOWN_SIZES = (0, 0xFFFFFFFF)

# Speech runs at about 15 characters a second; anything far outside a wide band
# around that is truncated or runaway audio, not a voice reading the text.
CHARS_PER_S = 15.0
_TAG = re.compile(r"<[a-z_]+>")


@dataclass(frozen=True)
class WavInfo:
    """The format and length of a WAV's PCM data."""

    sample_rate: int
    channels: int
    sample_width: int
    frames: int
    data_offset: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def wav_header(
    data_bytes: int | None, sample_rate: int = SAMPLE_RATE, channels: int = 1, width: int = 2
) -> bytes:
    """A 44-byte PCM WAV header; `data_bytes=None` writes the "unknown" size 0xFFFFFFFF."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return b"".join((
        b"RIFF", struct.pack("<I", riff), b"WAVE",
        b"fmt ", struct.pack("<IHHIIHH", 16, 1, channels, sample_rate,
                             sample_rate * channels * width, channels * width, width * 8),
        b"data", struct.pack("<I", size),
    ))  # fmt: skip


def encode_wav(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete mono 16-bit WAV around `pcm`."""
    return wav_header(len(pcm), sample_rate) + pcm


def parse_wav(data: bytes) -> WavInfo:
    """Read the header of a WAV and count its frames from the bytes actually present.

    Raises:
        BadAudio: when the bytes are not a PCM RIFF/WAVE file.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadAudio(
            f"not a WAV: the {len(data)} bytes returned do not start with a RIFF/WAVE header "
            f"(they start {data[:16]!r}); the server failed to produce audio"
        )
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"fmt ":
            if len(data) < body + 16:
                break
            fmt = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk_id == b"data":
            if fmt is None:
                break
            _, channels, rate, _, block, bits = fmt
            present = len(data) - body
            length = present if size in UNKNOWN_SIZES else min(size, present)
            frames = length // block if block else 0
            return WavInfo(rate, channels, bits // 8, frames, body)
        offset = body + size + (size & 1)
    raise BadAudio(
        f"malformed WAV: {len(data)} bytes with no 'fmt ' chunk before a 'data' chunk; "
        "the server sent a truncated or broken file"
    )


def expected_speech_s(text: str) -> float:
    """Roughly how long a voice takes to read `text` (emotion tags such as <laugh> aside)."""
    return max(len(_TAG.sub("", text).strip()) / CHARS_PER_S, 0.3)


def validate_speech(
    data: bytes, text: str, *, sample_rate: int = SAMPLE_RATE, source: str = "the server"
) -> WavInfo:
    """Check that `data` is speech for `text`: RIFF, rate, mono 16-bit, frames, duration.

    Raises:
        BadAudio: naming what is wrong. An empty WAV is what the Orpheus front-end
            returns, with status 200, while its completions backend is down.
    """
    info = parse_wav(data)
    if (info.sample_rate, info.channels, info.sample_width) != (sample_rate, 1, 2):
        raise BadAudio(
            f"{source} returned {info.sample_rate} Hz, {info.channels} channel(s), "
            f"{info.sample_width * 8}-bit audio; expected {sample_rate} Hz mono 16-bit"
        )
    if info.frames == 0:
        raise BadAudio(
            f"{source} answered 200 with an empty WAV (0 frames, {len(data)} bytes); a TTS "
            "front-end does this when its model backend is down: check the backend"
        )
    expected = expected_speech_s(text)
    if not expected / 4 <= info.duration_s <= expected * 4 + 3:
        raise BadAudio(
            f"{source} returned {info.duration_s:.2f} s of audio for {len(text)} characters "
            f"of text (about {expected:.1f} s expected); the audio is truncated or runaway"
        )
    return info


class WavStream:
    """Reads a streamed WAV: feed chunks as they arrive, take PCM out as it comes.

    The header may span chunks and declare an unknown size (0 or 0xFFFFFFFF).
    """

    def __init__(self) -> None:
        self._head = b""
        self._info: WavInfo | None = None
        self._pcm = bytearray()
        self._emitted = 0

    def feed(self, chunk: bytes) -> bytes:
        """Take one chunk; return the whole samples it completes (b"" while in the header)."""
        if self._info is None:
            self._head += chunk
            try:
                info = parse_wav(self._head)
            except BadAudio:
                if len(self._head) < 512 and b"RIFF".startswith(self._head[:4]):
                    return b""  # the header is still arriving
                raise
            self._info = info
            chunk = self._head[info.data_offset :]
        self._pcm += chunk
        aligned = len(self._pcm) - len(self._pcm) % 2
        out = bytes(self._pcm[self._emitted : aligned])
        self._emitted = aligned
        return out

    @property
    def pcm_bytes(self) -> int:
        return len(self._pcm)

    def finish(self) -> bytes:
        """The whole stream as a WAV with its true sizes.

        Raises:
            BadAudio: when no header ever arrived.
        """
        if self._info is None:
            parse_wav(self._head)  # raises, naming what came instead of a header
            raise BadAudio("the stream ended inside the WAV header")
        pcm = bytes(self._pcm[: len(self._pcm) - len(self._pcm) % 2])
        return (
            wav_header(
                len(pcm), self._info.sample_rate, self._info.channels, self._info.sample_width
            )
            + pcm
        )


class ProgressiveWav:
    """A WAV written as its PCM arrives, readable as a WAV at every moment.

    To a regular file, each append writes the PCM first and then rewrites the header's
    sizes to cover it, so the file is a valid WAV however its writer is cut short (a
    reader finds at most the samples the sizes name). To a pipe (stdout, a player) the
    header says "unknown size" (0xFFFFFFFF), which readers play to the stream's end.
    """

    def __init__(
        self, out: BinaryIO, sample_rate: int = SAMPLE_RATE, channels: int = 1, width: int = 2
    ) -> None:
        self.out = out
        self.format = (sample_rate, channels, width)
        self.data_bytes = 0
        try:
            self.seekable = out.seekable()
        except (AttributeError, OSError):
            self.seekable = False
        out.write(wav_header(0 if self.seekable else None, sample_rate, channels, width))
        out.flush()

    def append(self, pcm: bytes) -> None:
        """Write `pcm` (whole frames of the header's format), then its sizes."""
        self.out.write(pcm)
        self.data_bytes += len(pcm)
        if self.seekable:
            self.out.flush()
            end = self.out.tell()
            self.out.seek(0)
            self.out.write(wav_header(self.data_bytes, *self.format))
            self.out.seek(end)
        self.out.flush()
