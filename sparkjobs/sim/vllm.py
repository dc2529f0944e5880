"""A simulated vLLM OpenAI-compatible server: chat, completions, models, health, metrics.

Generation runs on the continuous-batching engine, so many requests share steps and
throughput grows with concurrency as vLLM's does. The same class, with any model
accepted, plays the completions backend behind an Orpheus front-end: given an
Orpheus prompt it streams `<custom_token_N>` audio codes. With `like` in its profile
it plays a llama.cpp server instead, in what sparkjobs reads of one: no GET /health
(llama-cpp-python), no usage chunk, `llamacpp:` metrics or none, any model name
served, their wording of a prompt too long for the context, and llama-server's
`error:` event in a failing stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from aiohttp import web

from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.sim import textgen
from sparkjobs.sim.base import RequestProblem, SimService
from sparkjobs.sim.batching import BatchEngine
from sparkjobs.sim.faults import Fate
from sparkjobs.sim.metrics import VllmMetrics
from sparkjobs.sim.wire import SseWriter, model_list, server_error, usage

VERSION = "0.19.0"
LABELS = {"llama-server": "llama.cpp llama-server", "llama-cpp-python": "llama-cpp-python"}
OWNED_BY = {"vllm": "vllm", "llama-server": "llamacpp", "llama-cpp-python": "me"}
NOT_FOUND = {"detail": "Not Found"}  # FastAPI's answer to a route it does not have


class VllmSim(SimService):
    """`vllm serve` for the configured models, from a profile."""

    label = "vLLM"
    health_path = "/health"

    def __init__(
        self,
        name: str,
        service: ServiceConfig,
        profile: SimProfile,
        *,
        any_model: bool = False,
        label: str | None = None,
    ) -> None:
        super().__init__(name, service, profile)
        self.engine = BatchEngine(lambda: self.profile)
        self.metrics = VllmMetrics()
        self.any_model = any_model
        self.label = label or LABELS.get(self.profile.like, self.label)

    @property
    def models(self) -> list[str]:
        """The models it lists and serves: `served_models`, else the configured ones."""
        if self.profile.served_models is not None:
            return list(self.profile.served_models)
        return list(self.service.models) or ["orpheus"]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self._health),
            web.get("/version", self._version),
            web.get("/v1/models", self._models),
            web.get("/metrics", self._metrics),
            web.post("/v1/chat/completions", self.work(self._chat)),
            web.post("/v1/completions", self.work(self._completions)),
        ]

    def error(self, status: int, message: str) -> web.StreamResponse:
        return self.refuse(RequestProblem(status, message))

    def refuse(self, problem: RequestProblem) -> web.StreamResponse:
        body = server_error(self.profile.like, problem.status, problem.message,
                            shape=self.profile.error_shape, kind=problem.kind)  # fmt: skip
        return web.json_response(body, status=problem.status)

    async def close(self) -> None:
        await self.engine.close()

    async def _health(self, request: web.Request) -> web.Response:
        if not self.profile.health_route:
            return web.json_response(NOT_FOUND, status=404)
        if self.profile.like == "llama-server":
            return web.json_response({"status": "ok"})
        return web.Response(status=200)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def _models(self, request: web.Request) -> web.Response:
        like = self.profile.like
        length = self.profile.context_tokens if like == "vllm" else None
        return web.json_response(model_list(self.models, OWNED_BY[like], length))

    async def _metrics(self, request: web.Request) -> web.Response:
        names = self.profile.metric_names
        if names == "none":
            return web.json_response(NOT_FOUND, status=404)
        load = (self.engine.running, self.engine.waiting, self.engine.kv_cache_usage)
        if names == "llamacpp":
            text = self.metrics.render_llamacpp(*load)
        else:
            text = self.metrics.render((self.models or ["none"])[0], *load)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    def _validate(self, body: dict[str, Any], chat: bool) -> tuple[str, str, int | None]:
        """(model, prompt text, max_tokens), or a RequestProblem as vLLM words it."""
        model = str(body.get("model") or (self.models or ["default"])[0])
        if not (self.any_model or self.profile.any_model) and model not in self.models:
            if self.profile.like == "llama-cpp-python":
                raise RequestProblem(400, f"The model `{model}` does not exist",
                                     "model_not_found")  # fmt: skip
            raise RequestProblem(404, f"The model `{model}` does not exist.")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise RequestProblem(400, "messages: Field required (a non-empty list)")
            prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            raw = body.get("prompt")
            if not isinstance(raw, str | list) or not raw:
                raise RequestProblem(400, "prompt: Field required (a string or a list)")
            prompt = raw if isinstance(raw, str) else " ".join(map(str, raw))
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise RequestProblem(400, f"max_tokens must be at least 1, got {max_tokens!r}.")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or temperature < 0:
            raise RequestProblem(400, f"temperature must be non-negative, got {temperature!r}.")
        self._check_context(textgen.count_tokens(prompt), max_tokens)
        return model, prompt, max_tokens

    def _check_context(self, prompt_tokens: int, max_tokens: int | None) -> None:
        """Refuse a request the context cannot hold, in the played server's words."""
        limit = self.profile.context_tokens or 0
        if self.profile.like == "llama-server":  # it counts the prompt alone
            if prompt_tokens >= limit:
                raise RequestProblem(400, "the request exceeds the available context size, "
                                     "try increasing it", "exceed_context_size_error")  # fmt: skip
            return
        wanted = prompt_tokens + (max_tokens or 0)
        if wanted <= limit:
            return
        said = (
            f"This model's maximum context length is {limit} tokens. However, you "
            f"requested {wanted} tokens ({prompt_tokens} in the messages, {max_tokens} "
            "in the completion). Please reduce the length of the messages or completion."
        )
        if self.profile.like == "llama-cpp-python":
            raise RequestProblem(400, said, "context_length_exceeded")
        raise RequestProblem(400, said)

    def _script(
        self, model: str, prompt: str, max_tokens: int | None, seed: object, chat: bool
    ) -> tuple[list[str], int, str]:
        """(pieces, how many of them are reasoning, finish reason) for one request."""
        rng = textgen.rng_for(self.profile.seed, model, prompt, seed)
        orpheus = None if chat else textgen.orpheus_request(prompt)
        if orpheus is not None:
            content = textgen.audio_code_pieces(rng, orpheus[1])
            finish = "stop"
            if max_tokens is not None and max_tokens < len(content):
                content, finish = content[:max_tokens], "length"
        else:
            count, finish = textgen.plan(rng, max_tokens)
            content = textgen.pieces(rng, count)
        thinking = textgen.pieces(rng, self.profile.reasoning_tokens) if chat else []
        return thinking + content, len(thinking), finish

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await self.body(request)
        model, prompt, max_tokens = self._validate(body, chat)
        stream = bool(body.get("stream"))
        fate = self.draw(streaming=stream)
        if fate is Fate.ERROR:
            return self.error(500, "EngineCore encountered an issue (simulated fault)")
        if fate is Fate.HANG:
            await self.hang()
        limit = self.profile.max_queue
        if limit is not None and self.engine.running + self.engine.waiting >= limit:
            return self.error(
                503,
                f"The server is overloaded: {limit} requests are queued "
                "or running (--max-num-queued-reqs). Try again later.",
            )
        steps, thinking, finish = self._script(model, prompt, max_tokens, body.get("seed"), chat)
        prompt_tokens = textgen.count_tokens(prompt)
        self.metrics.prompt_tokens += prompt_tokens
        run = _Run(self, request, chat, model, steps, thinking, finish, prompt_tokens)
        if stream:
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            include = asked and bool(self.profile.stream_usage)
            return await run.stream(include, midstream=fate is Fate.MIDSTREAM)
        return await run.whole()


class _Run:
    """One generation request on the engine, answered whole or as SSE."""

    def __init__(
        self,
        sim: VllmSim,
        request: web.Request,
        chat: bool,
        model: str,
        steps: list[str],
        thinking: int,
        finish: str,
        prompt_tokens: int,
    ) -> None:
        self.sim, self.request, self.chat, self.model = sim, request, chat, model
        self.steps, self.thinking, self.finish = steps, thinking, finish
        self.prompt_tokens = prompt_tokens
        prefix = "chatcmpl" if chat else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.started = asyncio.get_running_loop().time()
        self.generated = 0

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.started

    def _finished(self, reason: str) -> None:
        self.sim.metrics.generation_tokens += self.generated
        self.sim.metrics.finished[reason] += 1
        self.sim.metrics.e2e.observe(self._elapsed())

    async def _fail(self, sse: SseWriter) -> web.StreamResponse:
        """A fault half way: vLLM sends an error event then `[DONE]`; llama-server an
        `error:` event and nothing more."""
        self._finished("abort")
        profile = self.sim.profile
        error = server_error(profile.like, 500, "EngineCore encountered an issue (simulated "
                             "mid-stream fault)", shape=profile.error_shape)  # fmt: skip
        if profile.like == "llama-server":
            await sse.send(error["error"], field="error")
            return await sse.end()
        await sse.send(error)
        return await sse.done()

    def _field(self, index: int) -> str:
        if index < self.thinking:
            return self.sim.profile.reasoning_field
        return "content"

    async def whole(self) -> web.StreamResponse:
        tokens = self.sim.engine.generate(self.prompt_tokens, len(self.steps))
        async with contextlib.aclosing(tokens):
            async for index in tokens:
                if index == 0:
                    self.sim.metrics.ttft.observe(self._elapsed())
                self.generated += 1
        self._finished(self.finish)
        text = "".join(self.steps[self.thinking :])
        reasoning = "".join(self.steps[: self.thinking]) or None
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {
                "role": "assistant", "content": text, self.sim.profile.reasoning_field: reasoning,
                "tool_calls": []}}  # fmt: skip
        else:
            choice = {"index": 0, "text": text, "prompt_logprobs": None}
        choice.update(logprobs=None, finish_reason=self.finish, stop_reason=None)
        return web.json_response({
            "id": self.id, "object": self.object, "created": self.created, "model": self.model,
            "choices": [choice], "usage": {**usage(self.prompt_tokens, self.generated),
                                           "prompt_tokens_details": None},
            "prompt_logprobs": None, "kv_transfer_params": None,
        })  # fmt: skip

    async def stream(self, include_usage: bool, *, midstream: bool) -> web.StreamResponse:
        sse = SseWriter(self.request)
        chunk_object = f"{self.object}.chunk" if self.chat else self.object
        head = {"id": self.id, "object": chunk_object, "created": self.created,
                "model": self.model}  # fmt: skip
        last = len(self.steps) - 1
        tokens = self.sim.engine.generate(self.prompt_tokens, len(self.steps))
        async with contextlib.aclosing(tokens):
            async for index in tokens:
                if index == 0:
                    # vLLM answers (headers, role chunk) once the first token exists.
                    self.sim.metrics.ttft.observe(self._elapsed())
                    await sse.start()
                    if self.chat:
                        await sse.send({**head, "choices": [{"index": 0, "delta": {
                            "role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None}]})  # fmt: skip
                if midstream and index == len(self.steps) // 2:
                    return await self._fail(sse)
                self.generated += 1
                choice: dict[str, Any] = {"index": 0}
                if self.chat:
                    choice["delta"] = {self._field(index): self.steps[index]}
                else:
                    choice["text"] = self.steps[index]
                choice.update(logprobs=None, finish_reason=self.finish if index == last else None)
                if index == last:
                    choice["stop_reason"] = None  # the finish chunk still carries text
                await sse.send({**head, "choices": [choice]})
        self._finished(self.finish)
        if include_usage:
            await sse.send(
                {**head, "choices": [], "usage": usage(self.prompt_tokens, self.generated)}
            )
        return await sse.done()
