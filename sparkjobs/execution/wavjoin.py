"""Joining speech pieces into one WAV: PCM frames in order, with no gap and no click.

Pieces are synthesized separately, so one may end mid-syllable at a sample far from
zero while the next starts elsewhere: a step there is an audible click. Each seam gets
a short raised-cosine fade out and fade in *within* the pieces' own frames, so the
joined audio has exactly as many frames as the pieces together and meets near zero.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from sparkjobs.backends.audio import WavInfo, parse_wav, wav_header
from sparkjobs.errors import BadAudio

SEAM_FADE_MS = 8.0


@dataclass(frozen=True)
class Joined:
    """The joined WAV and its format."""

    wav: bytes
    info: WavInfo

    @property
    def duration_s(self) -> float:
        return self.info.duration_s


def join_wavs(wavs: Sequence[bytes], *, fade_ms: float = SEAM_FADE_MS) -> Joined:
    """Concatenate the PCM of `wavs`, fading each seam, into one WAV.

    Args:
        wavs: whole WAV files of identical format (16-bit PCM, same rate and channels).
        fade_ms: length of the fade on each side of a seam (capped at half a piece).

    Raises:
        BadAudio: no pieces, a piece that is not a WAV, a format that differs from the
            first piece's, or a width other than 16 bits; the message names the piece.
    """
    if not wavs:
        raise BadAudio("no pieces to join")
    infos = [parse_wav(wav) for wav in wavs]
    first = infos[0]
    layout = (first.sample_rate, first.channels, first.sample_width)
    for number, info in enumerate(infos):
        if (info.sample_rate, info.channels, info.sample_width) != layout:
            raise BadAudio(
                f"piece {number} is {info.sample_rate} Hz, {info.channels} channel(s), "
                f"{info.sample_width * 8}-bit; piece 0 is {layout[0]} Hz, {layout[1]} "
                f"channel(s), {layout[2] * 8}-bit: pieces of one text must share a format"
            )
    if first.sample_width != 2:
        raise BadAudio(f"only 16-bit PCM can be joined, not {first.sample_width * 8}-bit")
    pcm = array("h")
    last = len(wavs) - 1
    for number, (wav, info) in enumerate(zip(wavs, infos, strict=True)):
        pcm.extend(_faded(wav, info, first=number == 0, last=number == last, fade_ms=fade_ms))
    if sys.byteorder == "big":
        pcm.byteswap()
    data = pcm.tobytes()
    header = wav_header(len(data), first.sample_rate, first.channels, first.sample_width)
    frames_total = sum(info.frames for info in infos)
    joined = WavInfo(first.sample_rate, first.channels, 2, frames_total, len(header))
    return Joined(header + data, joined)


def piece_pcm(
    wav: bytes, *, first: bool, last: bool, fade_ms: float = SEAM_FADE_MS
) -> tuple[bytes, WavInfo]:
    """One piece's PCM (little-endian 16-bit) exactly as `join_wavs` puts it in the
    whole WAV, seams faded, so audio streamed piece by piece equals the joined file's.

    Raises:
        BadAudio: not a WAV, or not 16-bit PCM.
    """
    info = parse_wav(wav)
    if info.sample_width != 2:
        raise BadAudio(f"only 16-bit PCM can be joined, not {info.sample_width * 8}-bit")
    samples = _faded(wav, info, first=first, last=last, fade_ms=fade_ms)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes(), info


@dataclass(frozen=True)
class PieceEnds:
    """A piece's PCM as the join will have it, before it is known whether the piece is
    the last: `head`, then `tail_more` if another piece follows, else `tail_last`."""

    head: bytes
    tail_more: bytes
    tail_last: bytes
    info: WavInfo


def piece_ends(wav: bytes, *, first: bool, fade_ms: float = SEAM_FADE_MS) -> PieceEnds:
    """`piece_pcm` of a piece whose successor is not known yet, split where its
    fade-out would start, so that all but its last milliseconds can be heard at once.

    Raises:
        BadAudio: not a WAV, or not 16-bit PCM.
    """
    more, info = piece_pcm(wav, first=first, last=False, fade_ms=fade_ms)
    last, _ = piece_pcm(wav, first=first, last=True, fade_ms=fade_ms)
    span = min(round(info.sample_rate * fade_ms / 1000), info.frames // 2)
    cut = len(more) - span * info.channels * 2
    return PieceEnds(more[:cut], more[cut:], last[cut:], info)


def _faded(wav: bytes, info: WavInfo, *, first: bool, last: bool, fade_ms: float) -> array[int]:
    """A piece's samples with the seams it has faded: in unless first, out unless last."""
    samples = _samples(wav, info)
    frames = info.frames
    span = min(round(info.sample_rate * fade_ms / 1000), frames // 2)
    if not first:
        _fade(samples, info.channels, range(span), rising=True, span=span)
    if not last:
        _fade(samples, info.channels, range(frames - span, frames), rising=False, span=span)
    return samples


def _samples(wav: bytes, info: WavInfo) -> array[int]:
    """A piece's 16-bit samples (whole frames only), in native byte order."""
    end = info.data_offset + info.frames * info.channels * 2
    samples = array("h")
    samples.frombytes(wav[info.data_offset : end])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _fade(samples: array[int], channels: int, frames: range, *, rising: bool, span: int) -> None:
    """Scale `frames` of `samples` by a raised cosine from 0 up (or down to 0)."""
    for position, frame in enumerate(frames):
        # Rising: 0 at the seam, 1 after `span` frames; falling: the mirror image, so
        # the frame nearest the seam on either side is silent.
        step = position if rising else span - 1 - position
        gain = 0.5 - 0.5 * math.cos(math.pi * step / span)
        for channel in range(channels):
            index = frame * channels + channel
            samples[index] = round(samples[index] * gain)
