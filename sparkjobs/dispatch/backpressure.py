"""Backpressure: what a model server says about its own load, and when to hold work back.

vLLM publishes `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc` on
`/metrics`, llama.cpp's `llama-server` (with --metrics) `llamacpp:requests_deferred`,
`llamacpp:requests_processing` and, in the versions that have it,
`llamacpp:kv_cache_usage_ratio`; a server whose waiting queue is already long, or
whose KV cache is full, gets no new work until it drains (whoever else sends it
requests). A server with none of these names says nothing of its load, which holds
nothing back. Ollama has no metrics: `/api/ps` says which models are resident, and so
whether the next call pays a model load; its queue is the one our leases bound at
OLLAMA_NUM_PARALLEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Each gauge under the names the servers give it, first found first.
WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")
RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing")
KV_CACHE = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",  # before vLLM 0.12; removed since
    "llamacpp:kv_cache_usage_ratio",  # llama-server until mid-2025; removed since
)
# One sample line: a name, optional labels (which may hold spaces), a value.
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(?P<value>\S+)")


@dataclass(frozen=True)
class ServerLoad:
    """A server's own account of its load; None where it gives none."""

    waiting: int | None = None
    running: int | None = None
    kv_cache_usage: float | None = None  # 0 to 1
    resident_models: tuple[str, ...] | None = None  # Ollama: models in memory


@dataclass(frozen=True)
class Verdict:
    """Whether to hold work back from a server, and why (for the wait reason)."""

    overloaded: bool
    detail: str


def parse_metrics(text: str) -> ServerLoad:
    """The load gauges of a vLLM or llama-server `/metrics` page (Prometheus text format).

    Gauges with several label sets (one per engine) are summed; the KV-cache usage
    is the highest of the engines'. A gauge the page does not have is None.
    """
    sums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for line in text.splitlines():
        sample = SAMPLE.match(line)
        if sample is None:
            continue
        try:
            value = float(sample["value"])
        except ValueError:
            continue
        name = sample["name"]
        sums[name] = sums.get(name, 0.0) + value
        peaks[name] = max(peaks.get(name, 0.0), value)
    waiting = next((sums[n] for n in WAITING if n in sums), None)
    running = next((sums[n] for n in RUNNING if n in sums), None)
    return ServerLoad(
        waiting=None if waiting is None else int(waiting),
        running=None if running is None else int(running),
        kv_cache_usage=next((peaks[n] for n in KV_CACHE if n in peaks), None),
    )


def parse_ollama_ps(document: Mapping[str, Any]) -> ServerLoad:
    """The models an Ollama server holds in memory (`GET /api/ps`)."""
    models = document.get("models") or []
    names = tuple(str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict))
    return ServerLoad(resident_models=names)


def judge(
    load: ServerLoad,
    *,
    max_waiting: int,
    max_kv_cache_usage: float,
    models: Sequence[str] = (),
) -> Verdict:
    """Whether `load` is too much to send more work to.

    Args:
        load: what the server reported.
        max_waiting: more requests than this waiting on the server hold work back.
        max_kv_cache_usage: a KV cache fuller than this (0 to 1) holds work back.
        models: the service's configured models (for Ollama's residency note).
    """
    if load.waiting is not None and load.waiting > max_waiting:
        return Verdict(
            True,
            f"{load.waiting} requests already wait on the server (more than "
            f"dispatch.max_server_waiting = {max_waiting})",
        )
    if load.kv_cache_usage is not None and load.kv_cache_usage > max_kv_cache_usage:
        return Verdict(
            True,
            f"KV cache {load.kv_cache_usage:.0%} full (more than "
            f"dispatch.max_kv_cache_usage = {max_kv_cache_usage:.0%})",
        )
    parts = []
    if load.running is not None:
        parts.append(f"{load.running} running, {load.waiting or 0} waiting")
    if load.kv_cache_usage is not None:
        parts.append(f"KV cache {load.kv_cache_usage:.0%}")
    if load.resident_models is not None and models:
        missing = [m for m in models[:1] if m not in load.resident_models]
        if missing:
            parts.append(f"model {missing[0]} not in memory: the next call loads it")
    return Verdict(False, "; ".join(parts))
