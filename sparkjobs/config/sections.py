"""The sections of the cluster config: nodes and services, how tasks, dispatch, the
worker, the reconciler and beat behave, and each server of a node (Flower, the run
page, metrics, alerts, artifacts, the simulators). Their defaults live here."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    model_validator,
)

from sparkjobs.config.values import (
    DEFAULT_MAX_IN_FLIGHT,
    LOOPBACK_V4,
    SIM_KIND_DEFAULTS,
    SIM_SERVER_DEFAULTS,
    IPAddress,
    Name,
    Port,
    Section,
    ServiceKind,
    SimServer,
    is_loopback,
)


class NodeConfig(Section):
    """One machine of the cluster; its name is also the name of its queue."""

    bond_address: IPAddress
    lan_address: IPAddress | None = None
    artifacts_port: Port | None = Field(
        default=None, description="overrides [artifacts].port for this node"
    )
    metrics_port: Port | None = Field(
        default=None, description="overrides [metrics].port for this node"
    )


class TimeoutsConfig(Section):
    """Explicit client timeouts for one model server."""

    connect_s: float = Field(default=5.0, gt=0)
    first_byte_s: float = Field(default=120.0, gt=0)
    total_s: float = Field(default=900.0, gt=0)


class ServiceConfig(Section):
    """One model server, reached over HTTP by the worker of its node."""

    node: Name
    kind: ServiceKind
    url: HttpUrl
    models: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    max_in_flight: int | None = Field(default=None, ge=1, le=4096)
    default: bool = False
    backend_url: HttpUrl | None = Field(
        default=None, description="Orpheus only: the completions server the front-end calls"
    )
    timeouts: TimeoutsConfig = TimeoutsConfig()

    @model_validator(mode="after")
    def _resolve_limit(self) -> ServiceConfig:
        if self.max_in_flight is None:
            object.__setattr__(self, "max_in_flight", DEFAULT_MAX_IN_FLIGHT[self.kind])
        return self

    @property
    def in_flight_limit(self) -> int:
        """How many requests this server may have at once (resolved from its kind)."""
        return self.max_in_flight or DEFAULT_MAX_IN_FLIGHT[self.kind]


class TasksConfig(Section):
    """Limits that bound how long a message may stay unacknowledged."""

    time_limit_s: int = Field(default=1800, ge=1, description="hard limit on one attempt")
    max_retry_delay_s: int = Field(default=300, ge=0, description="the longest retry countdown")
    visibility_timeout_s: int | None = Field(
        default=None, description="default: time_limit_s + max_retry_delay_s + 300"
    )
    database_outage_s: float = Field(
        default=1800.0,
        gt=0,
        description="how long a step retries while the database is unreachable, then is "
        "left for recovery",
    )

    @property
    def visibility_s(self) -> int:
        return self.visibility_timeout_s or self.time_limit_s + self.max_retry_delay_s + 300


class DispatchConfig(Section):
    """How workers admit calls to model servers: leases, health, backpressure, waits."""

    lease_ttl_s: float = Field(
        default=15.0, gt=0, description="a lease not renewed this long is free (killed worker)"
    )
    health_interval_s: float = Field(default=2.0, gt=0, description="between health probes")
    health_ttl_s: float = Field(
        default=10.0, gt=0, description="a published health reading expires after this"
    )
    wait_deadline_s: float = Field(
        default=600.0, gt=0, description="how long a step waits for a down or loading server"
    )
    max_wait_delay_s: float = Field(
        default=30.0, gt=0, description="the longest countdown between two waits for health"
    )
    lease_poll_s: float = Field(
        default=0.5, ge=0, description="unused: work waits in its service's line (older configs)"
    )
    max_server_waiting: int = Field(
        default=8, ge=0, description="vLLM: requests waiting on the server above this hold work"
    )
    max_kv_cache_usage: float = Field(
        default=0.98, gt=0, le=1, description="vLLM: KV-cache usage above this holds work"
    )


class WorkerConfig(Section):
    """How a node's worker runs."""

    concurrency: int | None = Field(
        default=None, ge=1, le=1024, description="default: the node's services' limits, + 4"
    )
    shutdown_grace_s: float = Field(
        default=5.0, ge=0, description="on SIGTERM, how long running tasks may finish"
    )
    mingle: bool = Field(
        default=True,
        description="at start, ask the other workers which tasks were revoked (about 1 s)",
    )
    task_events: Literal["on-demand", "always"] = Field(
        default="on-demand",
        description=(
            "Celery task events: on-demand (sent once Flower or `up` asks for them) "
            "or always (and a task-sent event for every message published)"
        ),
    )


class ReconcilerConfig(Section):
    """Finding work whose message was lost, and queueing it again (sparkjobs.worker.reconciler)."""

    enabled: bool = Field(default=True, description="run the reconciler in the workers")
    heartbeat_interval_s: float = Field(
        default=2.0, gt=0, description="how often a worker renews its heartbeat and claims"
    )
    heartbeat_ttl_s: float = Field(
        default=10.0, gt=0, description="a worker (and its claims) not renewed this long is gone"
    )
    interval_s: float = Field(default=5.0, gt=0, description="between two reconciler passes")
    unclaimed_s: float = Field(
        default=15.0,
        gt=0,
        description="unfinished work with no message and no claim this long is queued again",
    )

    @model_validator(mode="after")
    def _ttl_outlives_interval(self) -> ReconcilerConfig:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"reconciler.heartbeat_ttl_s ({self.heartbeat_ttl_s}) must exceed "
                f"heartbeat_interval_s ({self.heartbeat_interval_s}), or live workers "
                "would look dead between two heartbeats"
            )
        return self

    @property
    def recovery_bound_s(self) -> float:
        """The longest a lost unit of work waits before it is queued again."""
        # The claims of a killed worker expire, or (if it was the active reconciler)
        # its lock does; then a unit is seen missing for unclaimed_s, pass by pass.
        return max(self.heartbeat_ttl_s, self.lock_ttl_s) + self.unclaimed_s + 2 * self.interval_s

    @property
    def lock_ttl_s(self) -> float:
        """How long the active reconciler's lock outlives its last renewal."""
        return 3 * self.interval_s


class BeatConfig(Section):
    """How the scheduler (`sparkjobs beat`) decides and fails over."""

    on_time_s: float = Field(
        default=30.0, gt=0, description="a slot fired up to this late is on time, later missed"
    )
    lock_ttl_s: float = Field(
        default=5.0, gt=0, description="a killed active beat is replaced within this plus 1 s"
    )


class FlowerConfig(Section):
    address: IPAddress = LOOPBACK_V4
    port: Port = 5555
    node: Name | None = Field(default=None, description="the node it runs on; default the first")
    basic_auth: tuple[SecretStr, ...] = Field(default=(), description='"user:password" entries')
    open_api: bool = Field(
        default=False,
        description="on loopback without basic_auth, open Flower's REST API to every local "
        "client and, through Flower's CORS headers, to every web page in a local browser",
    )


class WebConfig(Section):
    address: IPAddress = LOOPBACK_V4
    port: Port = 8800
    node: Name | None = Field(default=None, description="the node it runs on; default the first")
    token: SecretStr | None = Field(
        default=None, description="API bearer token; also the password of basic auth"
    )
    basic_auth: tuple[SecretStr, ...] = Field(default=(), description='"user:password" entries')
    public_url: HttpUrl | None = Field(
        default=None, description="how people reach the run page (alert links); default its bind"
    )
    flower_url: HttpUrl | None = Field(
        default=None, description="Flower as people reach it (task links); default its bind"
    )

    @property
    def needs_auth(self) -> bool:
        """Whether requests must authenticate: off loopback, or whenever a secret is set."""
        return bool(self.token or self.basic_auth) or not is_loopback(self.address)


class MetricsConfig(Section):
    """The Prometheus endpoint of each worker (no secret in any label); off without a port."""

    port: Port | None = Field(default=None, description="nodes may override it (metrics_port)")


class AlertsConfig(Section):
    """A webhook called once per incident: a run failed, or a service went down."""

    webhook_url: SecretStr | None = None
    format: Literal["ntfy", "slack"] = "ntfy"
    health_every_s: float = Field(default=30.0, gt=0, description="how often services are probed")


class ArtifactsConfig(Section):
    port: Port = 8780
    token: SecretStr | None = None


class SimProfile(Section):
    """How the simulator of one service behaves: `[sim.<service>]`.

    Speeds left as None take the defaults of the service's kind (SIM_KIND_DEFAULTS),
    and the server's ways left as None those of the server it is `like`
    (SIM_SERVER_DEFAULTS); `for_kind` fills them in. Rates are probabilities per
    request, 0 to 1.
    """

    time_scale: float = Field(default=1.0, gt=0, description="every simulated duration / this")
    seed: int = Field(default=0, description="same seed, same prompt: same text")
    tokens_per_s: float | None = Field(
        default=None, gt=0, description="single-stream decode speed (orpheus: its backend's)"
    )
    prefill_tokens_per_s: float | None = Field(default=None, gt=0)
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="vLLM --max-num-seqs; Ollama OLLAMA_NUM_PARALLEL"
    )
    batch_slowdown: float | None = Field(
        default=None, ge=0, description="how much each extra running sequence lengthens a step"
    )
    kv_cache_tokens: int = Field(default=262144, ge=1, description="KV cache size, in tokens")
    max_queue: int | None = Field(
        default=None, ge=1, description="running + waiting above this gets 503 (default: none)"
    )
    model_load_s: float | None = Field(
        default=None, ge=0, description="Ollama: cold load of a model (load_duration)"
    )
    realtime_factor: float | None = Field(
        default=None, gt=0, description="qwen-clone: audio seconds per wall second"
    )
    first_audio_ms: float | None = Field(default=None, ge=0, description="qwen-clone")
    loading_s: float = Field(default=0.0, ge=0, description="connections refused this long")
    reasoning_tokens: int = Field(default=0, ge=0, description="reasoning text before content")
    reasoning_field: Literal["reasoning", "reasoning_content"] = "reasoning"
    error_shape: Literal["nested", "flat"] = Field(
        default="nested", description="vLLM >= 0.10.1 nests errors; older ones are flat"
    )
    like: SimServer = Field(
        default="vllm", description="openai: the server it plays; the keys below follow it"
    )
    health_route: bool | None = Field(
        default=None, description="openai: GET /health is answered (else 404)"
    )
    stream_usage: bool | None = Field(
        default=None, description="openai: a stream ends with a usage chunk when asked"
    )
    metric_names: Literal["vllm", "llamacpp", "none"] | None = Field(
        default=None, description="openai: the names on /metrics (none: no /metrics)"
    )
    context_tokens: int | None = Field(
        default=None, ge=16, description="openai: the context; longer requests are refused"
    )
    any_model: bool | None = Field(
        default=None, description="openai: serve any model a request names"
    )
    served_models: tuple[str, ...] | None = Field(
        default=None, description="openai, ollama: the models served (default: the config's)"
    )
    html: bool = Field(
        default=False, description="every route answers 200 with an HTML page, not the API"
    )
    error_rate: float = Field(default=0.0, ge=0, le=1, description="answer 500 at once")
    hang_rate: float = Field(default=0.0, ge=0, le=1, description="never answer")
    midstream_error_rate: float = Field(default=0.0, ge=0, le=1, description="fail mid-stream")
    slow_factor: float = Field(default=1.0, gt=0, description="multiplies every duration")
    refuse: bool = Field(default=False, description="refuse every connection")
    empty_wav: bool = Field(default=False, description="TTS: 200 with a 0-frame WAV")
    backend_down: bool = Field(default=False, description="orpheus: its backend not served")

    def for_kind(self, kind: str) -> SimProfile:
        """This profile with every None speed replaced by the default of `kind`, and
        every None way of the server by that of the server it is `like`."""
        defaults = {**SIM_SERVER_DEFAULTS[self.like], **SIM_KIND_DEFAULTS.get(kind, {})}
        update = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.model_copy(update=update)
