"""WAV bytes for tests that store or serve audio."""

from __future__ import annotations

import io
import wave


def silent_wav(seconds: float, rate: int = 24000) -> bytes:
    """A mono 16-bit WAV of `seconds` of silence at `rate` Hz."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()
