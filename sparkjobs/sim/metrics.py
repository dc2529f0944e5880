"""vLLM's Prometheus metrics, with the real names, labels and buckets (a subset), and
llama.cpp's `llama-server` page (`--metrics`) under its own names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


@dataclass
class Histogram:
    """A cumulative Prometheus histogram."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        counts = self.counts or [0] * len(self.buckets)
        out = [
            f'{name}_bucket{{{labels},le="{b}"}} {c}'
            for b, c in zip(self.buckets, counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


@dataclass
class VllmMetrics:
    """The counters and histograms one simulated vLLM keeps."""

    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: Counter[str] = field(default_factory=Counter)

    def render(self, model: str, running: int, waiting: int, kv_usage: float) -> str:
        """The `/metrics` page in the Prometheus text format."""
        labels = f'engine="0",model_name="{model}"'
        lines: list[str] = []

        def metric(name: str, kind: str, text: str, body: list[str]) -> None:
            lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}", *body])

        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [f"vllm:num_requests_running{{{labels}}} {float(running)}"],
        )
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [f"vllm:num_requests_waiting{{{labels}}} {float(waiting)}"],
        )
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [f"vllm:kv_cache_usage_perc{{{labels}}} {kv_usage}"],
        )
        metric(
            "vllm:num_preemptions",
            "counter",
            "Cumulative number of preemption from the engine.",
            [f"vllm:num_preemptions_total{{{labels}}} 0.0"],
        )
        metric(
            "vllm:prompt_tokens",
            "counter",
            "Number of prefill tokens processed.",
            [f"vllm:prompt_tokens_total{{{labels}}} {float(self.prompt_tokens)}"],
        )
        metric(
            "vllm:generation_tokens",
            "counter",
            "Number of generation tokens processed.",
            [f"vllm:generation_tokens_total{{{labels}}} {float(self.generation_tokens)}"],
        )
        metric(
            "vllm:request_success",
            "counter",
            "Count of successfully processed requests.",
            [
                f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} '
                f"{float(self.finished[reason])}"
                for reason in ("stop", "length", "abort")
            ],
        )
        metric(
            "vllm:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
            self.ttft.lines("vllm:time_to_first_token_seconds", labels),
        )
        metric(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of e2e request latency in seconds.",
            self.e2e.lines("vllm:e2e_request_latency_seconds", labels),
        )
        return "\n".join(lines) + "\n"

    def render_llamacpp(self, running: int, waiting: int, kv_usage: float) -> str:
        """llama-server's `/metrics` page: `llamacpp:` names, no labels. The KV-cache
        gauge is that of the versions that still have one (before mid-2025)."""
        gauges = (
            ("prompt_tokens_total", "counter", "Number of prompt tokens processed.",
             self.prompt_tokens),
            ("tokens_predicted_total", "counter", "Number of generation tokens processed.",
             self.generation_tokens),
            ("kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
             kv_usage),
            ("requests_processing", "gauge", "Number of requests processing.", running),
            ("requests_deferred", "gauge", "Number of requests deferred.", waiting),
        )  # fmt: skip
        lines: list[str] = []
        for name, kind, text, value in gauges:
            lines += [f"# HELP llamacpp:{name} {text}", f"# TYPE llamacpp:{name} {kind}",
                      f"llamacpp:{name} {value}"]  # fmt: skip
        return "\n".join(lines) + "\n"
