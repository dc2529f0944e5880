"""What the TTS clients share: reading a (possibly streamed) WAV answer, validated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparkjobs.backends.audio import WavInfo, WavStream, parse_wav, validate_speech
from sparkjobs.backends.http import ServerClient
from sparkjobs.backends.timings import Stopwatch, Timings

OnAudio = Callable[[bytes], None]


@dataclass(frozen=True)
class SpeechResult:
    """A validated WAV (24 kHz mono 16-bit), its format and the call's timings."""

    wav: bytes
    info: WavInfo
    timings: Timings

    @property
    def pcm(self) -> bytes:
        return self.wav[self.info.data_offset :]


class SpeechClient(ServerClient):
    """Base of the TTS clients: POST, read the WAV as it streams, validate it."""

    def _speak(
        self, path: str, body: dict[str, Any], text: str, on_audio: OnAudio | None
    ) -> SpeechResult:
        """Send one speech request and read its WAV, whole or streamed.

        The time to first audio is when the first PCM bytes arrive, whether the
        server streams (header of unknown size, then chunks) or sends a whole file.

        Raises:
            BadAudio: a 200 with an empty, malformed or implausibly short WAV.
        """
        watch = Stopwatch(self.clock)
        stream = WavStream()
        with self.request("POST", path, body=body) as reply:
            for chunk in reply.chunks():
                pcm = stream.feed(chunk)
                if pcm:
                    watch.first()
                    if on_audio is not None:
                        on_audio(pcm)
        wav = stream.finish()
        validate_speech(wav, text, source=f"{self.name} ({self.base_url}{path})")
        info = parse_wav(wav)
        return SpeechResult(wav, info, watch.timings(audio_s=info.duration_s))
