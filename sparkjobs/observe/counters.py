"""The counters and histograms of sparkjobs' own Prometheus metrics, observed as steps
finish and artifacts move, in one registry per process. Labels are node, service, kind
and status names only: never a URL, a prompt or a secret.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from sparkjobs.store.models import Step

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

STEPS_FINISHED = Counter(
    "sparkjobs_steps_finished", "Steps that reached an end, by outcome",
    ["node", "service", "kind", "status"], registry=REGISTRY,
)  # fmt: skip
LATENCY = Histogram(
    "sparkjobs_step_latency_seconds", "Duration of the call that finished a step",
    ["node", "service", "kind"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
FIRST_OUTPUT = Histogram(
    "sparkjobs_time_to_first_output_seconds", "Time to first token (LLM) or first audio (TTS)",
    ["node", "service", "kind"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
TOKENS_PER_S = Histogram(
    "sparkjobs_tokens_per_second", "Decode speed of LLM steps",
    ["node", "service"], buckets=(1, 5, 10, 20, 40, 60, 80, 120, 200, 400, 1000),
    registry=REGISTRY,
)  # fmt: skip
REALTIME_FACTOR = Histogram(
    "sparkjobs_audio_realtime_factor", "Audio seconds / wall seconds (above 1: faster)",
    ["node", "service"], buckets=(0.25, 0.5, 1, 1.5, 2, 4, 8, 16, 32), registry=REGISTRY,
)  # fmt: skip
ARTIFACT_BYTES = Counter(
    "sparkjobs_artifact_bytes", "Artifact bytes pulled into a node's store over the network",
    ["node"], registry=REGISTRY,
)  # fmt: skip
ARTIFACT_SPEED = Histogram(
    "sparkjobs_artifact_fetch_bytes_per_second", "Speed of each artifact fetch into a node",
    ["node"], buckets=tuple(10.0**e for e in range(4, 11)), registry=REGISTRY,
)  # fmt: skip


def record_transfer(node: str, size_bytes: int, seconds: float) -> None:
    """Count an artifact fetch into `node`'s store."""
    ARTIFACT_BYTES.labels(node).inc(size_bytes)
    if seconds > 0:
        ARTIFACT_SPEED.labels(node).observe(size_bytes / seconds)


class _Seen:
    """Step ids already observed, so a redelivered task is not counted twice."""

    def __init__(self, size: int = 4096) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, step_id: uuid.UUID) -> bool:
        with self._lock:
            if step_id in self._ids:
                return False
            self._ids[step_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


_seen = _Seen()


def observe_step(step: Step) -> None:
    """Observe a finished step's outcome and timings (once per step per process)."""
    if not step.status.terminal or not _seen.first(step.id):
        return
    kind = str((step.spec or {}).get("kind", step.name or "custom"))
    STEPS_FINISHED.labels(step.node, step.service, kind, step.status.value).inc()
    if step.status.value != "succeeded":
        return
    if step.latency_ms is not None:
        LATENCY.labels(step.node, step.service, kind).observe(step.latency_ms / 1000)
    if step.ttft_ms is not None:
        FIRST_OUTPUT.labels(step.node, step.service, kind).observe(step.ttft_ms / 1000)
    if step.tokens_per_s is not None:
        TOKENS_PER_S.labels(step.node, step.service).observe(step.tokens_per_s)
    if step.rtf is not None:
        REALTIME_FACTOR.labels(step.node, step.service).observe(step.rtf)
