"""Audio for the TTS simulators: 24 kHz mono 16-bit PCM of a plausible length.

Speech from espeak-ng when it is installed; otherwise a voiced tone whose pitch
depends on the voice and whose loudness rises and falls like syllables.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import shutil
import subprocess
from array import array

from sparkjobs.backends.audio import SAMPLE_RATE, parse_wav
from sparkjobs.errors import BadAudio

_TAG = re.compile(r"<[a-z_]+>")
CHARS_PER_S = 14.0  # a calm reading pace
TAG_S = 0.6  # <laugh>, <sigh>... take about this long
SYLLABLE_S = 0.25
# Orpheus' English voices by how they sound, for espeak-ng's variants.
FEMALE_VOICES = frozenset({"tara", "leah", "jess", "mia", "zoe"})


def speech_seconds(text: str) -> float:
    """How long a voice takes to read `text`, emotion tags included."""
    tags = len(_TAG.findall(text))
    words = _TAG.sub("", text).strip()
    return max(0.4, len(words) / CHARS_PER_S + tags * TAG_S)


def synthesize(text: str, voice: str, frames: int) -> bytes:
    """`frames` samples of PCM reading `text` in `voice` (espeak-ng, or a tone)."""
    spoken = _espeak(_TAG.sub("", text).strip(), voice) if shutil.which("espeak-ng") else None
    if spoken:
        pcm = spoken[: frames * 2]
        return pcm + bytes(frames * 2 - len(pcm))
    cycle = _syllable(voice)
    repeats = frames * 2 // len(cycle) + 1
    return (cycle * repeats)[: frames * 2]


@functools.lru_cache(maxsize=64)
def _syllable(voice: str) -> bytes:
    """One syllable of a voice's tone; its pitch fits a whole number of periods."""
    digest = hashlib.sha256(voice.encode()).digest()
    pitch_hz = 100 + 8 * (digest[0] % 20)  # 100..252 Hz, a multiple of 4
    length = int(SAMPLE_RATE * SYLLABLE_S)
    samples = array("h")
    for n in range(length):
        envelope = math.sin(math.pi * n / length) ** 2
        t = n / SAMPLE_RATE
        wave = 0.7 * math.sin(2 * math.pi * pitch_hz * t) + 0.3 * math.sin(
            4 * math.pi * pitch_hz * t
        )
        samples.append(int(9000 * envelope * wave))
    return samples.tobytes()


def _espeak_voice(voice: str) -> list[str]:
    """espeak-ng options that give each simulated voice a sound of its own."""
    digest = hashlib.sha256(voice.encode()).digest()
    variant = "en+f3" if voice in FEMALE_VOICES else "en+m3"
    return ["-v", variant, "-p", str(30 + digest[0] % 40)]


@functools.lru_cache(maxsize=32)
def _espeak(text: str, voice: str) -> bytes | None:
    """espeak-ng's reading of `text` in `voice`, resampled to 24 kHz; None if it fails."""
    if not text:
        return None
    try:
        done = subprocess.run(
            ["espeak-ng", "--stdout", *_espeak_voice(voice), text],
            capture_output=True,
            timeout=30,
            check=True,
        )
        info = parse_wav(done.stdout)
    except (OSError, subprocess.SubprocessError, BadAudio):
        return None
    source = array("h")
    source.frombytes(done.stdout[info.data_offset : info.data_offset + info.frames * 2])
    return _resample(source, info.sample_rate).tobytes()


def _resample(source: array[int], rate: int) -> array[int]:
    """Linear resampling to 24 kHz (espeak-ng speaks at 22.05 kHz)."""
    if rate == SAMPLE_RATE or not source:
        return source
    step = rate / SAMPLE_RATE
    out = array("h")
    for n in range(int(len(source) / step)):
        x = n * step
        i = int(x)
        j = min(i + 1, len(source) - 1)
        out.append(int(source[i] + (source[j] - source[i]) * (x - i)))
    return out
