"""A simulated Orpheus TTS front-end (Lex-au/Orpheus-FastAPI shape) on its backend.

For each request it streams `<custom_token_N>` codes from its completions backend,
turns every 7 into a 2048-sample frame and answers a whole 24 kHz WAV, one request at
a time, as the real front-end does. Quirks kept: an unknown voice is read as tara;
with the backend down it answers 200 with an empty WAV, after three tries.
`"stream": true` (an extension, as canopy's streaming server does) sends the WAV
header with data size 0 at once, then PCM frame by frame.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from sparkjobs.backends.audio import wav_header
from sparkjobs.backends.orpheus import ORPHEUS_VOICES
from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.sim.base import RequestProblem, SimService, log
from sparkjobs.sim.faults import Fate
from sparkjobs.sim.pace import pause
from sparkjobs.sim.textgen import SAMPLES_PER_FRAME, TOKENS_PER_FRAME
from sparkjobs.sim.voice import speech_seconds, synthesize

BACKEND_TRIES = 3
FRAME_BYTES = SAMPLES_PER_FRAME * 2


class OrpheusSim(SimService):
    """The `/v1/audio/speech` front-end; `backend_url` is its completions server."""

    label = "Orpheus front-end"
    health_path = "/v1/audio/voices"

    def __init__(
        self, name: str, service: ServiceConfig, profile: SimProfile, backend_url: str | None
    ) -> None:
        super().__init__(name, service, profile)
        self.backend_url = backend_url
        self.voices = service.voices or ORPHEUS_VOICES
        self._serial = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/audio/speech", self.work(self._speech)),
            web.get("/v1/audio/voices", self._voices),
        ]

    def error(self, status: int, message: str) -> web.StreamResponse:
        return web.json_response({"detail": message}, status=status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _voices(self, request: web.Request) -> web.Response:
        # The real handler blocks its event loop while generating: even this waits.
        async with self._serial:
            return web.json_response({"status": "ok", "voices": list(self.voices)})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise RequestProblem(400, "Missing input text")
        voice = str(body.get("voice") or "tara")
        if voice not in self.voices:
            log.warning("simulator %s: voice %r unknown, using tara (as Orpheus does)",
                        self.name, voice)  # fmt: skip
            voice = "tara"
        stream = bool(body.get("stream"))
        fate = self.draw(streaming=stream)
        if fate is Fate.ERROR:
            return web.Response(status=500, text="Internal Server Error")
        if fate is Fate.HANG:
            await self.hang()
        async with self._serial:
            expected = round(speech_seconds(text) * 24000 / SAMPLES_PER_FRAME) + 4
            pcm = synthesize(text, voice, expected * SAMPLES_PER_FRAME)
            if stream:
                return await self._stream(request, voice, text, pcm, fate is Fate.MIDSTREAM)
            frames = 0
            if not self.profile.empty_wav:
                async for _ in self._frames(voice, text):
                    frames += 1
            audio = _frames_of(pcm, 0, frames)
            name = f"{voice}_{datetime.now():%Y%m%d_%H%M%S}.wav"
            return web.Response(
                body=wav_header(len(audio)) + audio,
                content_type="audio/wav",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

    async def _stream(
        self, request: web.Request, voice: str, text: str, pcm: bytes, midstream: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        await response.write(wav_header(0))  # size unknown: 0, as canopy's server writes
        if not self.profile.empty_wav:
            total = round(speech_seconds(text) * 24000 / SAMPLES_PER_FRAME)
            index = 0
            async for _ in self._frames(voice, text):
                if midstream and index == total // 3 and request.transport is not None:
                    request.transport.abort()  # the connection drops mid-audio
                    return response
                await response.write(_frames_of(pcm, index, 1))
                index += 1
        await response.write_eof()
        return response

    async def _frames(self, voice: str, text: str) -> AsyncGenerator[None, None]:
        """One item per SNAC frame the backend's tokens make; none if it is down."""
        payload: dict[str, Any] = {
            "prompt": f"<|audio|>{voice}: {text}<|eot_id|>", "max_tokens": 8192,
            "temperature": 0.6, "top_p": 0.9, "repeat_penalty": 1.1, "stream": True,
            "model": "orpheus",
        }  # fmt: skip
        for attempt in range(BACKEND_TRIES):
            produced = 0
            try:
                if self.profile.backend_down or self.backend_url is None:
                    raise aiohttp.ClientConnectionError("backend down (simulated)")
                async for _ in self._tokens_to_frames(payload):
                    produced += 1
                    yield
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                if produced:
                    return  # partial audio, as the real server keeps what it decoded
                log.warning(
                    "simulator %s: backend %s failed (%s), try %d of %d",
                    self.name,
                    self.backend_url,
                    exc,
                    attempt + 1,
                    BACKEND_TRIES,
                )
                await pause(self.profile, 2.0**attempt)
        log.warning("simulator %s: backend down, answering 200 with an empty WAV", self.name)

    async def _tokens_to_frames(self, payload: dict[str, Any]) -> AsyncGenerator[None, None]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.backend_url}/v1/completions"
        async with self._session.post(url, json=payload) as reply:
            if reply.status != 200:
                raise aiohttp.ClientResponseError(reply.request_info, (), status=reply.status)
            tokens = 0
            async for raw in reply.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    return
                for choice in event.get("choices") or []:
                    tokens += str(choice.get("text", "")).count("<custom_token_")
                while tokens >= TOKENS_PER_FRAME:
                    tokens -= TOKENS_PER_FRAME
                    yield


def _frames_of(pcm: bytes, first: int, count: int) -> bytes:
    """Frames `first`..`first+count` of `pcm`, silence past its end."""
    chunk = pcm[first * FRAME_BYTES : (first + count) * FRAME_BYTES]
    return chunk + bytes(count * FRAME_BYTES - len(chunk))
