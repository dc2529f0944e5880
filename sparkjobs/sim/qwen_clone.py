"""A simulated Qwen3-TTS voice-clone server (vLLM-Omni's request shape, 24 kHz).

A voice is named (configured on the server) or cloned per request from `ref_audio`
(a base64 data URL, bare base64, or a URL, not fetched), `ref_text` and
`x_vector_only_mode`. One request at a time (as faster-qwen3-tts's lock); audio comes
at `realtime_factor` times real time after `first_audio_ms`. `"stream": true` sends a
WAV header of size 0xFFFFFFFF, then PCM chunks as they are made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any

from aiohttp import web

from sparkjobs.backends.audio import SAMPLE_RATE, wav_header
from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.sim.base import RequestProblem, SimService
from sparkjobs.sim.faults import Fate
from sparkjobs.sim.pace import pause
from sparkjobs.sim.textgen import count_tokens
from sparkjobs.sim.voice import speech_seconds, synthesize
from sparkjobs.sim.wire import model_list, vllm_error

CHUNK_S = 0.5  # audio per streamed chunk


class QwenCloneSim(SimService):
    """`/v1/audio/speech` with per-request reference voices and named voices."""

    label = "Qwen3-TTS voice clone"
    health_path = "/health"

    def __init__(self, name: str, service: ServiceConfig, profile: SimProfile) -> None:
        super().__init__(name, service, profile)
        self.voices = service.voices or ("default",)
        self._serial = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self._health),
            web.get("/v1/models", self._models),
            web.get("/v1/audio/voices", self._voices),
            web.post("/v1/audio/speech", self.work(self._speech)),
        ]

    def error(self, status: int, message: str) -> web.StreamResponse:
        return web.json_response(vllm_error(status, message), status=status)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model_loaded": True})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(model_list(list(self.service.models) or ["qwen3-tts"],
                                            "vllm-omni", None))  # fmt: skip

    async def _voices(self, request: web.Request) -> web.Response:
        return web.json_response({"voices": list(self.voices), "uploaded_voices": []})

    def _voice_of(self, body: dict[str, Any]) -> str:
        """The voice to speak in: a named one, or a key for the reference's."""
        ref = body.get("ref_audio")
        if ref is None:
            voice = str(body.get("voice") or self.voices[0])
            if voice not in self.voices:
                raise RequestProblem(400, f"Unsupported voice '{voice}'. Available voices: "
                                          f"{', '.join(self.voices)}")  # fmt: skip
            return voice
        if not isinstance(ref, str) or not ref:
            raise RequestProblem(400, "ref_audio must be a URL or base64-encoded audio")
        if not ref.startswith(("http://", "https://", "file://")):
            encoded = ref.split(",", 1)[1] if ref.startswith("data:") else ref
            try:
                audio = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RequestProblem(400, f"ref_audio is not valid base64: {exc}") from exc
            if audio[:4] != b"RIFF" or audio[8:12] != b"WAVE":
                raise RequestProblem(400, "ref_audio could not be decoded as audio (not a WAV)")
        if not body.get("x_vector_only_mode") and not body.get("ref_text"):
            raise RequestProblem(
                400,
                "ref_text is required for in-context voice cloning; "
                "give the transcript or set x_vector_only_mode=true",
            )
        return "clone-" + hashlib.sha256(ref.encode()).hexdigest()[:8]

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise RequestProblem(400, "input: Field required (the text to speak)")
        if body.get("response_format", "wav") not in ("wav", "pcm"):
            raise RequestProblem(400, "the simulator speaks response_format wav or pcm only")
        voice = self._voice_of(body)
        stream = bool(body.get("stream"))
        fate = self.draw(streaming=stream)
        if fate is Fate.ERROR:
            return self.error(500, "EngineCore encountered an issue (simulated fault)")
        if fate is Fate.HANG:
            await self.hang()
        raw = body.get("response_format") == "pcm"
        async with self._serial:
            frames = 0 if self.profile.empty_wav else int(speech_seconds(text) * SAMPLE_RATE)
            pcm = synthesize(text, voice, frames)
            await pause(self.profile, (self.profile.first_audio_ms or 0.0) / 1000)
            if stream:
                return await self._stream(request, pcm, raw, fate is Fate.MIDSTREAM)
            await pause(self.profile, frames / SAMPLE_RATE / (self.profile.realtime_factor or 1))
            headers = {
                "x-vllm-omni-input-tokens": str(count_tokens(text)),
                "x-vllm-omni-output-tokens": str(int(frames / SAMPLE_RATE * 12.5)),
            }
            content = pcm if raw else wav_header(len(pcm)) + pcm
            return web.Response(
                body=content, headers=headers, content_type="audio/pcm" if raw else "audio/wav"
            )

    async def _stream(
        self, request: web.Request, pcm: bytes, raw: bool, midstream: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "audio/pcm" if raw else "audio/wav",
                     "x-audio-format": "pcm-s16le-24000-mono"})  # fmt: skip
        await response.prepare(request)
        if not raw:
            await response.write(wav_header(None))  # size unknown: 0xFFFFFFFF
        step = int(CHUNK_S * SAMPLE_RATE) * 2
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        for index, chunk in enumerate(chunks):
            if midstream and index == len(chunks) // 2 and request.transport is not None:
                request.transport.abort()
                return response
            await response.write(chunk)
            await pause(self.profile, len(chunk) / 2 / SAMPLE_RATE
                        / (self.profile.realtime_factor or 1))  # fmt: skip
        await response.write_eof()
        return response
