"""Client of the Orpheus TTS front-end (`POST /v1/audio/speech`, Lex-au shape).

The front-end silently reads an unknown voice as tara and answers 200 with an empty
WAV when its completions backend is down; so this client checks voices against the
config and validates every WAV. Emotion tags (<laugh>, <sigh>...) pass through.
"""

from __future__ import annotations

import httpx

from sparkjobs.backends.http import Health
from sparkjobs.backends.speech import OnAudio, SpeechClient, SpeechResult
from sparkjobs.errors import BadAudio, UnknownVoice

# The voices of an Orpheus service that lists none in the config (its built-in set);
# the simulator and the submit checks read them from here.
ORPHEUS_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")


class OrpheusClient(SpeechClient):
    """Speech from an Orpheus front-end; its completions backend is a dependency."""

    @property
    def voices(self) -> tuple[str, ...]:
        return self.service.voices or ORPHEUS_VOICES

    def list_voices(self) -> list[str]:
        """The voices the front-end offers (`GET /v1/audio/voices`)."""
        return [str(v) for v in self.get_json("/v1/audio/voices").get("voices", [])]

    def health(self) -> Health:
        """The front-end answers its voices route, and its backend answers at all."""
        front = self.probe("/v1/audio/voices")
        problems = list(front.problems)
        backend = self.service.backend_url
        if backend is not None:
            url = str(backend).rstrip("/") + "/v1/models"
            try:
                self._http.get(url)
            except httpx.HTTPError as exc:
                problems.append(
                    f"{self.name}'s completions backend at {backend} does not answer "
                    f"({type(exc).__name__}); the front-end will return empty WAVs until it does"
                )
        return Health(not problems, tuple(problems))

    def speak(
        self,
        text: str,
        *,
        voice: str | None = None,
        model: str = "orpheus",
        stream: bool = False,
        on_audio: OnAudio | None = None,
    ) -> SpeechResult:
        """Synthesize `text` (emotion tags included) with one of the service's voices.

        Args:
            text: what to say; tags such as <laugh> are sent as they are.
            voice: default: the service's first voice (tara in the seed).
            model: sent as `model`; the front-end ignores it.
            stream: ask for a streamed WAV (`"stream": true`), for servers that offer it.
            on_audio: called with PCM chunks as they arrive.

        Raises:
            UnknownVoice: the voice is not among the service's voices.
            BadAudio: an empty or malformed WAV (backend down): retryable.
        """
        chosen = voice or self.voices[0]
        if chosen not in self.voices:
            raise UnknownVoice(
                f"voice {chosen!r} is not offered by {self.name}; known: "
                f"{', '.join(self.voices)}. The Orpheus front-end would read it as tara, "
                f"so it is refused here; fix the voice or services.{self.name}.voices"
            )
        body: dict[str, object] = {
            "model": model, "input": text, "voice": chosen, "response_format": "wav",
        }  # fmt: skip
        if stream:
            body["stream"] = True
        try:
            return self._speak("/v1/audio/speech", body, text, on_audio)
        except BadAudio as exc:
            backend = self.service.backend_url or "its completions backend"
            raise BadAudio(f"{exc} (Orpheus: check the backend at {backend})") from exc
