"""Client of Ollama's native API: `/api/chat` and `/api/generate`, NDJSON streaming.

Every line may be `{"error": ...}` even after a 200, so each one is checked. The final
line has `done: true` and the counts; its durations are in nanoseconds. `keep_alive`
is passed through ("10m", seconds, -1 to keep loaded, 0 to unload).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sparkjobs.backends.classify import midstream_error, not_json
from sparkjobs.backends.http import Health, Reply, ServerClient
from sparkjobs.backends.openai import Delta, Message, OnDelta, OpenAIClient, TextResult
from sparkjobs.backends.timings import Stopwatch
from sparkjobs.errors import RetryableError

KeepAlive = str | float | int


class OllamaClient(ServerClient):
    """Chat and generate against Ollama; `openai()` gives its /v1 face."""

    def health(self) -> Health:
        """`GET /` answers "Ollama is running"."""
        return self.probe("/")

    def version(self) -> str:
        """The server's version (`GET /api/version`)."""
        return str(self.get_json("/api/version")["version"])

    def models(self) -> list[str]:
        """The models pulled on the server (`GET /api/tags`)."""
        return [str(m["name"]) for m in self.get_json("/api/tags").get("models", [])]

    def loaded(self) -> list[str]:
        """The models in memory now (`GET /api/ps`)."""
        return [str(m["name"]) for m in self.get_json("/api/ps").get("models", [])]

    def openai(self) -> OpenAIClient:
        """A client of the same server's OpenAI-compatible `/v1` routes."""
        return OpenAIClient(self.service, name=self.name, clock=self.clock)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: KeepAlive | None = None,
        stream: bool = True,
        on_delta: OnDelta | None = None,
    ) -> TextResult:
        """Run one chat (`POST /api/chat`).

        Args:
            messages: chat messages.
            model: default: the service's first configured model.
            options: Ollama options (num_predict, temperature, seed, ...).
            keep_alive: how long the model stays loaded after this call.
            stream: stream the answer (NDJSON; gives a time to first token).
            on_delta: called with each piece as it arrives.

        Raises:
            RetryableError: refused, timeouts, 5xx (503 busy), an error line mid-stream.
            PermanentError: 400; UnknownModel for "model not found" (404).
        """
        body = self._body(model, options, keep_alive, stream)
        body["messages"] = list(messages)
        return self._generate("/api/chat", body, stream, on_delta)

    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: KeepAlive | None = None,
        stream: bool = True,
        on_delta: OnDelta | None = None,
    ) -> TextResult:
        """Run one generation (`POST /api/generate`); arguments as for `chat`."""
        body = self._body(model, options, keep_alive, stream)
        body["prompt"] = prompt
        if system is not None:
            body["system"] = system
        return self._generate("/api/generate", body, stream, on_delta)

    def _body(
        self,
        model: str | None,
        options: Mapping[str, Any] | None,
        keep_alive: KeepAlive | None,
        stream: bool,
    ) -> dict[str, Any]:
        # Ollama streams unless told otherwise, so `stream` is always sent.
        body: dict[str, Any] = {"model": self.model_or_default(model), "stream": stream}
        if options:
            body["options"] = dict(options)
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return body

    def _generate(
        self, path: str, body: dict[str, Any], stream: bool, on_delta: OnDelta | None
    ) -> TextResult:
        watch = Stopwatch(self.clock)
        text: list[str] = []
        reasoning: list[str] = []
        final: Mapping[str, Any] = {}
        with self.request("POST", path, body=body) as reply:
            for part in self._parts(reply):
                delta = _delta_of(part)
                text.append(delta.content)
                reasoning.append(delta.reasoning)
                if stream and (delta.content or delta.reasoning):
                    watch.first()
                    if on_delta is not None:
                        on_delta(delta)
                if part.get("done"):
                    final = part
        if not final:
            raise RetryableError(
                f"{self.name} ({self.base_url}{path}): the answer ended without its final "
                "`done: true` line; the server dropped the request"
            )
        return TextResult(
            "".join(text), "".join(reasoning), final.get("done_reason"),
            str(final.get("model", body["model"])),
            watch.timings(tokens_in=final.get("prompt_eval_count"),
                          tokens_out=final.get("eval_count")),
        )  # fmt: skip

    def _parts(self, reply: Reply) -> Iterator[dict[str, Any]]:
        for line in reply.lines():
            if not line.strip():
                continue
            try:
                part = json.loads(line)
            except ValueError as exc:
                raise not_json(f"{self.name} ({self.base_url})", line.encode()) from exc
            if "error" in part:
                raise midstream_error(self.name, self.base_url, part)
            yield part


def _delta_of(part: Mapping[str, Any]) -> Delta:
    message = part.get("message") or {}
    content = message.get("content", part.get("response", "")) or ""
    thinking = message.get("thinking", part.get("thinking", "")) or ""
    return Delta(str(content), str(thinking))
