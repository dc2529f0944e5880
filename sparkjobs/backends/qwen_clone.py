"""Client of the Qwen3-TTS voice-clone server (vLLM-Omni request shape, 24 kHz).

A voice is either named (configured on the server) or given per request as a
reference: `ref_audio` (a WAV, sent as a base64 data URL, or a URL), `ref_text` (its
transcript, for ICL cloning) and `x_vector_only_mode` (speaker embedding only).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sparkjobs.backends.audio import parse_wav
from sparkjobs.backends.http import Health
from sparkjobs.backends.speech import OnAudio, SpeechClient, SpeechResult
from sparkjobs.errors import BadAudio, BadInput, UnknownVoice


@dataclass(frozen=True)
class Reference:
    """A reference voice for one request.

    Attributes:
        audio: WAV bytes, or a URL the server can fetch (http(s)://, data:, file://).
        text: the exact transcript of the audio; None clones from the x-vector only.
        x_vector_only: use only the speaker embedding even when `text` is given.
    """

    audio: bytes | str
    text: str | None = None
    x_vector_only: bool = False

    def fields(self) -> dict[str, Any]:
        """The request fields in vLLM-Omni's shape."""
        if isinstance(self.audio, bytes):
            try:
                parse_wav(self.audio)  # fail here, not on the server, for a file that is no WAV
            except BadAudio as exc:
                raise BadInput(f"the reference audio is not a WAV file: {exc}") from exc
            audio = "data:audio/wav;base64," + base64.b64encode(self.audio).decode()
        else:
            audio = self.audio
        only_x = self.x_vector_only or self.text is None
        fields: dict[str, Any] = {"ref_audio": audio, "x_vector_only_mode": only_x}
        if self.text is not None:
            fields["ref_text"] = self.text
        return fields


class QwenCloneClient(SpeechClient):
    """Cloned-voice speech; streamed by default (first audio in ~300 ms)."""

    def health(self) -> Health:
        """`GET /health`."""
        return self.probe("/health")

    def speak(
        self,
        text: str,
        *,
        voice: str | None = None,
        reference: Reference | None = None,
        language: str = "Auto",
        stream: bool = True,
        on_audio: OnAudio | None = None,
    ) -> SpeechResult:
        """Synthesize `text` in a named voice or in the voice of a reference.

        Raises:
            BadInput: both a voice and a reference are given.
            UnknownVoice: a named voice not among the service's voices (or the server's).
            BadAudio: an empty or malformed WAV: retryable.
        """
        if voice is not None and reference is not None:
            raise BadInput("give either voice= (a server-side voice) or reference=, not both")
        body: dict[str, Any] = {
            "model": self.model_or_default(None) if self.service.models else "qwen3-tts",
            "input": text, "language": language, "response_format": "wav", "stream": stream,
        }  # fmt: skip
        if reference is not None:
            body["task_type"] = "Base"
            body.update(reference.fields())
        else:
            chosen = voice or (self.service.voices[0] if self.service.voices else None)
            if self.service.voices and chosen not in self.service.voices:
                raise UnknownVoice(
                    f"voice {chosen!r} is not offered by {self.name}; known: "
                    f"{', '.join(self.service.voices)}; fix the voice, pass a reference, "
                    f"or add it to services.{self.name}.voices"
                )
            if chosen is not None:
                body["voice"] = chosen
        return self._speak("/v1/audio/speech", body, text, on_audio)
