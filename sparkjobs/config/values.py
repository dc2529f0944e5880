"""The values a config is made of: names, ports, addresses, service kinds, and the
base of every section (unknown keys refused)."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

ServiceKind = Literal["openai", "ollama", "orpheus", "qwen-clone"]


LLM_KINDS: frozenset[str] = frozenset({"openai", "ollama"})


TTS_KINDS: frozenset[str] = frozenset({"orpheus", "qwen-clone"})


# How many requests each kind of server can usefully take at once, unless told:
# vLLM batches (continuous batching), Ollama runs OLLAMA_NUM_PARALLEL=1 by
# default, and the TTS front-ends handle one request at a time.
DEFAULT_MAX_IN_FLIGHT: dict[str, int] = {"openai": 32, "ollama": 1, "orpheus": 1, "qwen-clone": 1}


Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


Port = Annotated[int, Field(ge=1, le=65535)]


IPAddress = IPv4Address | IPv6Address


LOOPBACK_V4 = IPv4Address("127.0.0.1")


def is_loopback(address: IPAddress | str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name `localhost`."""
    if isinstance(address, str):
        if address == "localhost":
            return True
        try:
            address = ip_address(address.strip("[]"))
        except ValueError:
            return False
    return address.is_loopback


def default_data_dir() -> Path:
    """The XDG data dir, so a `submit` in another shell finds the `up` it belongs to."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sparkjobs"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Simulator defaults per service kind, from the seed's hardware (DGX Spark):
# Gemma 4 26B-A4B on vLLM decodes ~52 tok/s alone and 114.6 tok/s in aggregate
# at 3 streams (so each extra sequence lengthens a step by ~18%); qwen2.5:32b on
# Ollama runs one request at a time (OLLAMA_NUM_PARALLEL=1); the Orpheus backend
# decodes ~90 tok/s, a little above the 83 tok/s real time needs; the Qwen clone
# runs ~2x real time with ~300 ms to first audio. None in a SimProfile means these.
SIM_KIND_DEFAULTS: dict[str, dict[str, float | int]] = {
    "openai": {
        "tokens_per_s": 52.0,
        "prefill_tokens_per_s": 6000.0,
        "max_num_seqs": 64,
        "batch_slowdown": 0.18,
        "model_load_s": 0.0,
    },
    "ollama": {
        "tokens_per_s": 10.0,
        "prefill_tokens_per_s": 500.0,
        "max_num_seqs": 1,
        "batch_slowdown": 0.0,
        "model_load_s": 6.0,
    },
    "orpheus": {
        "tokens_per_s": 90.0,
        "prefill_tokens_per_s": 4000.0,
        "max_num_seqs": 1,
        "batch_slowdown": 0.0,
        "model_load_s": 0.0,
    },
    "qwen-clone": {
        "tokens_per_s": 25.0,
        "prefill_tokens_per_s": 4000.0,
        "max_num_seqs": 1,
        "batch_slowdown": 0.0,
        "model_load_s": 0.0,
        "realtime_factor": 2.0,
        "first_audio_ms": 300.0,
    },
}


SimServer = Literal["vllm", "llama-server", "llama-cpp-python"]


# What each OpenAI-compatible server the `openai` simulator can play does differently,
# in what sparkjobs reads (`[sim.<service>] like`): vLLM; llama.cpp's own
# `llama-server` (started with --metrics); and llama-cpp-python's server, which
# answers no GET /health, sends no usage chunk and has no /metrics. The llama.cpp
# servers serve one model and ignore the name a request gives. None in a SimProfile
# means these.
SIM_SERVER_DEFAULTS: dict[str, dict[str, bool | int | str]] = {
    "vllm": {
        "health_route": True,
        "stream_usage": True,
        "metric_names": "vllm",
        "context_tokens": 32768,
        "any_model": False,
    },
    "llama-server": {
        "health_route": True,
        "stream_usage": True,
        "metric_names": "llamacpp",
        "context_tokens": 4096,
        "any_model": True,
    },
    "llama-cpp-python": {
        "health_route": False,
        "stream_usage": False,
        "metric_names": "none",
        "context_tokens": 2048,
        "any_model": True,
    },
}
