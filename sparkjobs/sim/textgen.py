"""Deterministic text for the LLM simulators: same seed and prompt, same answer.

Also the token stream an Orpheus backend produces: `<custom_token_N>` audio codes,
seven per 2048-sample SNAC frame, as many as the text takes to read.
"""

from __future__ import annotations

import hashlib
import random
import re

from sparkjobs.sim.voice import speech_seconds

WORDS = [
    "the",
    "spark",
    "cluster",
    "runs",
    "model",
    "servers",
    "on",
    "two",
    "nodes",
    "joined",
    "by",
    "a",
    "bond",
    "and",
    "every",
    "job",
    "waits",
    "in",
    "a",
    "queue",
    "until",
    "a",
    "worker",
    "takes",
    "it",
    "then",
    "calls",
    "the",
    "server",
    "streams",
    "tokens",
    "back",
    "and",
    "writes",
    "the",
    "result",
    "so",
    "the",
    "morning",
    "briefing",
    "reads",
    "the",
    "weather",
    "news",
    "and",
    "calendar",
    "aloud",
    "in",
    "a",
    "calm",
    "voice",
    "while",
    "the",
    "scheduler",
    "keeps",
    "time",
]

ORPHEUS_PROMPT = re.compile(r"<\|audio\|>\s*(?P<voice>[^:]+):\s*(?P<text>.*?)<\|eot_id\|>", re.S)
TOKENS_PER_FRAME = 7
SAMPLES_PER_FRAME = 2048
FRAMES_PER_S = 24000 / SAMPLES_PER_FRAME


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator seeded by the sim's seed and the request's content."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def count_tokens(text: str) -> int:
    """About four characters a token, as for English with common tokenizers."""
    return max(1, (len(text) + 3) // 4)


def plan(rng: random.Random, max_tokens: int | None) -> tuple[int, str]:
    """How many tokens to generate and why generation ends ("stop" or "length")."""
    natural = rng.randint(24, 160)
    if max_tokens is not None and max_tokens < natural:
        return max_tokens, "length"
    return natural, "stop"


def pieces(rng: random.Random, count: int) -> list[str]:
    """`count` text pieces (one per token) that read as sentences."""
    out: list[str] = []
    start = True
    for index in range(count):
        word = rng.choice(WORDS)
        piece = (" " if index else "") + (word.capitalize() if start else word)
        start = index == count - 1 or rng.random() < 0.08
        out.append(piece + "." if start else piece)
    return out


def orpheus_request(prompt: str) -> tuple[str, str] | None:
    """(voice, text) when `prompt` is an Orpheus TTS prompt, else None."""
    match = ORPHEUS_PROMPT.search(prompt)
    return (match["voice"].strip(), match["text"]) if match else None


def audio_code_pieces(rng: random.Random, text: str) -> list[str]:
    """The `<custom_token_N>` pieces an Orpheus model emits to read `text`."""
    frames = max(1, round(speech_seconds(text) * FRAMES_PER_S))
    return [
        f"<custom_token_{10 + (i % TOKENS_PER_FRAME) * 4096 + rng.randrange(4096)}>"
        for i in range(frames * TOKENS_PER_FRAME)
    ]
