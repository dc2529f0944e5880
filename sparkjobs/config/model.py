"""The shape of the cluster config, and the only place its defaults live.

A `Config` is built once (see `sparkjobs.config.load`) and passed down; nothing
else reads the environment or the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sparkjobs.config.sections import (
    AlertsConfig,
    ArtifactsConfig,
    BeatConfig,
    DispatchConfig,
    FlowerConfig,
    MetricsConfig,
    NodeConfig,
    ReconcilerConfig,
    ServiceConfig,
    SimProfile,
    TasksConfig,
    WebConfig,
    WorkerConfig,
)
from sparkjobs.config.values import (
    Name,
    default_data_dir,
)


class Config(BaseSettings):
    """The whole cluster: nodes, the model servers on them, and where state lives."""

    model_config = SettingsConfigDict(
        env_prefix="SPARKJOBS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    broker_url: SecretStr | None = Field(
        default=None, description="default: the embedded Redis on a unix socket in data_dir"
    )
    broker_key_prefix: str = Field(
        default="", description="prefix for every key sparkjobs and Celery write in Redis"
    )
    database_url: SecretStr | None = Field(default=None, description="default: SQLite in data_dir")
    schedules_dir: Path = Path("schedules")
    nodes: dict[Name, NodeConfig] = Field(default_factory=dict)
    services: dict[Name, ServiceConfig] = Field(default_factory=dict)
    tasks: TasksConfig = TasksConfig()
    worker: WorkerConfig = WorkerConfig()
    dispatch: DispatchConfig = DispatchConfig()
    beat: BeatConfig = BeatConfig()
    reconciler: ReconcilerConfig = ReconcilerConfig()
    flower: FlowerConfig = FlowerConfig()
    web: WebConfig = WebConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig = AlertsConfig()
    sim: dict[Name, SimProfile] = Field(
        default_factory=dict, description="simulator profiles, by service name"
    )
    source: str = Field(default="<built-in default>", exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init values; the environment overrides them.
        return (env_settings, init_settings)

    @field_validator("data_dir", "schedules_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _fill_urls(self) -> Config:
        # Frozen model: defaults that depend on data_dir are set once, here.
        if self.broker_url is None:
            object.__setattr__(
                self, "broker_url", SecretStr(f"redis+socket://{self.embedded_socket}")
            )
        if self.database_url is None:
            object.__setattr__(
                self, "database_url", SecretStr(f"sqlite:///{self.data_dir / 'sparkjobs.db'}")
            )
        return self

    @property
    def embedded_socket(self) -> Path:
        """Where `up` puts its own Redis when no broker_url is configured."""
        return self.data_dir / "run" / "redis.sock"

    @property
    def broker(self) -> str:
        assert self.broker_url is not None
        return self.broker_url.get_secret_value()

    @property
    def database(self) -> str:
        assert self.database_url is not None
        return self.database_url.get_secret_value()

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker == f"redis+socket://{self.embedded_socket}"

    def node_services(self, node: str) -> dict[str, ServiceConfig]:
        return {name: s for name, s in self.services.items() if s.node == node}

    def artifacts_port(self, node: str) -> int:
        return self.nodes[node].artifacts_port or self.artifacts.port

    def metrics_port(self, node: str) -> int | None:
        """The port of `node`'s worker metrics, or None when metrics are off."""
        return self.nodes[node].metrics_port or self.metrics.port

    def first_node(self) -> str:
        return next(iter(self.nodes))

    def masked(self) -> dict[str, Any]:
        """The resolved config as plain data, every secret replaced by '***'."""
        from sparkjobs.config.render import masked_dump

        return masked_dump(self)
