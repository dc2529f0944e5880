"""A simulated Ollama: /api/chat and /api/generate in NDJSON, model listing, its /v1 face.

Requests to one model run OLLAMA_NUM_PARALLEL (max_num_seqs, default 1) at a time on
the batching engine; the rest wait, unbounded, as on a loaded model. A model not in
memory costs `model_load_s` first (reported as load_duration) and stays for
keep_alive (default 5m; 0 unloads after the answer; negative keeps it forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.sim import textgen
from sparkjobs.sim.base import RequestProblem, SimService
from sparkjobs.sim.batching import BatchEngine
from sparkjobs.sim.faults import Fate
from sparkjobs.sim.pace import pause, scaled
from sparkjobs.sim.wire import SseWriter, model_list, ollama_v1_error, usage

VERSION = "0.33.0"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
MIDSTREAM = "an error was encountered while running the model"
DEFAULT_KEEP_ALIVE_S = 300.0
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$")


def keep_alive_s(value: object) -> float:
    """Seconds a model stays loaded; negative is forever. Raises ValueError."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f'time: invalid duration "{value}"')
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2] or "s"]
    return float(match[1]) * unit


def _prompt_of(body: dict[str, Any], chat: bool) -> str:
    if not chat:
        return str(body.get("prompt") or "")
    messages = body.get("messages") or []
    return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class OllamaSim(SimService):
    """`ollama serve` with the configured models pulled."""

    label = "Ollama"
    health_path = "/"

    def __init__(self, name: str, service: ServiceConfig, profile: SimProfile) -> None:
        super().__init__(name, service, profile)
        self.engine = BatchEngine(lambda: self.profile)
        self.loaded: dict[str, float] = {}  # model -> loop time it expires (inf: never)
        self._load_lock = asyncio.Lock()

    @property
    def models(self) -> list[str]:
        """The models pulled: `served_models`, else the configured ones."""
        served = self.profile.served_models
        if served is not None:
            return [m if ":" in m else f"{m}:latest" for m in served]
        return [m if ":" in m else f"{m}:latest" for m in self.service.models] or [
            "llama3.2:latest"
        ]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self._root),
            web.get("/api/version", self._version),
            web.get("/api/tags", self._tags),
            web.get("/api/ps", self._ps),
            web.post("/api/chat", self.work(self._chat)),
            web.post("/api/generate", self.work(self._generate)),
            web.get("/v1/models", self._v1_models),
            web.post("/v1/chat/completions", self.work(self._v1_chat)),
        ]

    async def close(self) -> None:
        await self.engine.close()

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    def _card(self, model: str) -> dict[str, Any]:
        digest = textgen.rng_for(0, model).getrandbits(256)
        return {"name": model, "model": model, "modified_at": "2026-01-01T00:00:00Z",
                "size": 19851349856, "digest": f"{digest:064x}", "details": {
                    "parent_model": "", "format": "gguf", "family": "qwen2",
                    "families": ["qwen2"], "parameter_size": "32.8B",
                    "quantization_level": "Q4_K_M"}}  # fmt: skip

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [self._card(m) for m in self.models]})

    async def _ps(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        running = []
        for model, until in self.loaded.items():
            if until > now:
                left = 86400 * 365 if until == float("inf") else until - now
                expires = datetime.fromtimestamp(time.time() + left, UTC).isoformat()
                running.append({**self._card(model), "expires_at": expires,
                                "size_vram": 21474836480, "context_length": 4096})  # fmt: skip
        return web.json_response({"models": running})

    async def _v1_models(self, request: web.Request) -> web.Response:
        return web.json_response(model_list(self.models, "library", None))

    def _model(self, body: dict[str, Any]) -> str:
        raw = body.get("model")
        if not raw:
            raise RequestProblem(400, "model is required")
        model = str(raw) if ":" in str(raw) else f"{raw}:latest"
        if model not in self.models:
            raise RequestProblem(404, f'model "{raw}" not found, try pulling it first')
        return model

    async def _load(self, model: str, keep_s: float) -> float:
        """Make sure `model` is in memory; return the load time spent (seconds)."""
        loop = asyncio.get_running_loop()
        async with self._load_lock:
            spent = 0.0
            if self.loaded.get(model, 0.0) <= loop.time():
                start = loop.time()
                await pause(self.profile, self.profile.model_load_s or 0.0)
                spent = loop.time() - start
            # keep_alive 0 unloads after the answer (see _native); negative: never.
            until = loop.time() + scaled(self.profile, keep_s) if keep_s > 0 else float("inf")
            self.loaded[model] = until
            return spent

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, chat=True)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, chat=False)

    async def _admit(self, body: dict[str, Any], streaming: bool) -> tuple[str, float, Fate]:
        model = self._model(body)
        try:
            keep_s = keep_alive_s(body.get("keep_alive"))
        except ValueError as exc:
            raise RequestProblem(400, str(exc)) from exc
        fate = self.draw(streaming=streaming)
        if fate is Fate.ERROR:
            raise RequestProblem(500, "llama runner process has terminated (simulated fault)")
        if fate is Fate.HANG:
            await self.hang()
        limit = self.profile.max_queue
        if limit is not None and self.engine.running + self.engine.waiting >= limit:
            raise RequestProblem(503, BUSY)
        return model, keep_s, fate

    async def _native(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await self.body(request)
        stream = body.get("stream", True) is not False  # Ollama streams by default
        model, keep_s, fate = await self._admit(body, stream)
        started = asyncio.get_running_loop().time()
        load_s = await self._load(model, keep_s)
        prompt = _prompt_of(body, chat)
        base: dict[str, Any] = {"model": model}
        if not prompt:  # a load (or, with keep_alive 0, unload) request
            return self._load_only(base, chat, keep_s)
        options = body.get("options") or {}
        rng = textgen.rng_for(options.get("seed", self.profile.seed), model, prompt)
        count, finish = textgen.plan(rng, options.get("num_predict"))
        pieces = textgen.pieces(rng, count)
        prompt_tokens = textgen.count_tokens(prompt)
        response: web.StreamResponse | None = None
        if stream:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        first_at = 0.0
        tokens = self.engine.generate(prompt_tokens, count)
        async with contextlib.aclosing(tokens):
            async for index in tokens:
                if index == 0:
                    first_at = asyncio.get_running_loop().time()
                if response is None:
                    continue
                if index == 0:
                    await response.prepare(request)
                if fate is Fate.MIDSTREAM and index == count // 2:
                    await response.write(json.dumps({"error": MIDSTREAM}).encode() + b"\n")
                    await response.write_eof()
                    return response
                part = {**base, "created_at": _now(), "done": False}
                part.update(self._piece(chat, pieces[index]))
                await response.write(json.dumps(part).encode() + b"\n")
        end = asyncio.get_running_loop().time()
        final: dict[str, Any] = {**base, "created_at": _now(), "done": True, "done_reason": finish}
        final.update(self._piece(chat, "" if stream else "".join(pieces)))
        metrics = {"total_duration": end - started, "load_duration": load_s,
                   "prompt_eval_count": prompt_tokens,
                   "prompt_eval_duration": first_at - started - load_s,
                   "eval_count": count, "eval_duration": end - first_at}  # fmt: skip
        # Durations are nanoseconds; zero values are left out (Go's omitempty).
        final.update({k: (int(v * 1e9) if k.endswith("duration") else v)
                      for k, v in metrics.items() if v})  # fmt: skip
        if keep_s == 0:
            self.loaded.pop(model, None)
        if response is None:
            return web.json_response(final)
        await response.write(json.dumps(final).encode() + b"\n")
        await response.write_eof()
        return response

    def _load_only(self, base: dict[str, Any], chat: bool, keep_s: float) -> web.Response:
        if keep_s == 0:
            self.loaded.pop(str(base["model"]), None)
        reply = {**base, "created_at": _now(), "done": True,
                 "done_reason": "unload" if keep_s == 0 else "load"}  # fmt: skip
        reply.update(self._piece(chat, ""))
        return web.json_response(reply)

    @staticmethod
    def _piece(chat: bool, text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}

    async def _v1_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self.body(request)
            model, keep_s, _fate = await self._admit(body, bool(body.get("stream")))
        except RequestProblem as problem:
            return web.json_response(ollama_v1_error(problem.status, problem.message),
                                     status=problem.status)  # fmt: skip
        await self._load(model, keep_s)
        prompt = _prompt_of(body, chat=True)
        rng = textgen.rng_for(body.get("seed", self.profile.seed), model, prompt)
        count, finish = textgen.plan(rng, body.get("max_tokens"))
        pieces = textgen.pieces(rng, count)
        prompt_tokens = textgen.count_tokens(prompt)
        # Ollama's ids are small random numbers, not unique.
        head = {"id": f"chatcmpl-{random.randrange(1000)}", "created": int(time.time()),
                "model": model, "system_fingerprint": "fp_ollama"}  # fmt: skip
        if not body.get("stream"):
            async for _ in self.engine.generate(prompt_tokens, count):
                pass
            return web.json_response({**head, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                "finish_reason": finish}], "usage": usage(prompt_tokens, count)})  # fmt: skip
        sse = SseWriter(request)
        head["object"] = "chat.completion.chunk"
        tokens = self.engine.generate(prompt_tokens, count)
        async with contextlib.aclosing(tokens):
            async for index in tokens:
                if index == 0:
                    await sse.start()
                await sse.send(
                    {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": pieces[index]},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
        # Unlike vLLM, the finish reason comes in a chunk of its own, with an empty delta.
        await sse.send({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            await sse.send({**head, "choices": [], "usage": usage(prompt_tokens, count)})
        return await sse.done()
