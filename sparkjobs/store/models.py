"""The tables of the SQL store, as SQLAlchemy 2 typed models.

Runs hold steps; a step has attempts, at most one result and linked artifacts. Every
time is timezone-aware UTC, every status a string checked by the database itself
(`sparkjobs.store.choice`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false, text

from sparkjobs.store.choice import Choice

# Explicit names so that both engines, and every future migration, agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RunKind(StrEnum):
    CHAT = "chat"
    SPEAK = "speak"
    CLONE = "clone"
    PIPELINE = "pipeline"
    CUSTOM = "custom"


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    SUBMIT = "submit"
    MANUAL = "manual"
    API = "api"
    RETRY = "retry"


class Status(StrEnum):
    """The status of a run or of one of its steps."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


TERMINAL = tuple(status for status in Status if status.terminal)


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ArtifactRole(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    PIECE = "piece"  # one piece of a long text's speech, joined into the step's output


class PieceStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both engines (SQLite keeps no zone itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware times")
        value = value.astimezone(UTC)
        # SQLite stores text without a zone: keep it UTC so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UNFINISHED = text("finished_at IS NULL")

JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSONDocument,
    }


class Run(Base):
    """One execution of a job: what was asked, by what trigger, and how it ended."""

    __tablename__ = "runs"
    __table_args__ = (
        # One run per scheduled slot, even when two schedulers fire it.
        UniqueConstraint("job", "scheduled_for"),
        Index(None, "job", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job: Mapped[str] = mapped_column(String(200))
    kind: Mapped[RunKind] = mapped_column(Choice(RunKind, "run_kind"))
    trigger: Mapped[Trigger] = mapped_column(Choice(Trigger, "run_trigger"))
    scheduled_for: Mapped[datetime | None]
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    # Not indexed: a status change then updates the row in place (migration 0007);
    # unfinished runs are found through `ix_steps_unfinished`.
    status: Mapped[Status] = mapped_column(Choice(Status, "run_status"))
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    rerun_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # Submitted by someone who waits (`submit --wait`): its messages go first.
    interactive: Mapped[bool] = mapped_column(default=False, server_default=false())

    steps: Mapped[list[Step]] = relationship(
        back_populates="run", order_by="Step.index", passive_deletes=True
    )


class Step(Base):
    """One call to one service within a run, with the timings its client recorded."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("run_id", "index"),
        Index(None, "service", "finished_at"),
        # Only the steps not finished yet: every queued or running run has one.
        Index(
            "ix_steps_unfinished", "run_id", postgresql_where=UNFINISHED, sqlite_where=UNFINISHED
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))
    node: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    status: Mapped[Status] = mapped_column(Choice(Status, "step_status"))
    queued_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    audio_s: Mapped[float | None] = mapped_column(Float)
    rtf: Mapped[float | None] = mapped_column(Float)
    # The step as submitted (sparkjobs.runs.plan), so messages carry only ids.
    spec: Mapped[dict[str, Any] | None]
    # Long speech: how many pieces there are, and how many have finished (counted
    # with one atomic UPDATE, so exactly one piece sees the last count).
    pieces_total: Mapped[int | None] = mapped_column(Integer)
    pieces_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a queued or retrying step waits for (sparkjobs.dispatch.waits), and since when.
    waiting_for: Mapped[str | None] = mapped_column(Text)
    waiting_since: Mapped[datetime | None]

    run: Mapped[Run] = relationship(back_populates="steps")
    attempts: Mapped[list[Attempt]] = relationship(order_by="Attempt.number", passive_deletes=True)
    result: Mapped[Result | None] = relationship(passive_deletes=True)
    artifacts: Mapped[list[StepArtifact]] = relationship(passive_deletes=True)


class Attempt(Base):
    """One execution of a step's Celery task; redeliveries and retries add attempts."""

    __tablename__ = "step_attempts"
    __table_args__ = (UniqueConstraint("step_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    step_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str] = mapped_column(String(155))
    worker: Mapped[str] = mapped_column(String(255))
    status: Mapped[AttemptStatus] = mapped_column(Choice(AttemptStatus, "attempt_status"))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    piece: Mapped[int | None] = mapped_column(Integer)  # which piece of long speech, if any


class StepPiece(Base):
    """One piece of a long text that a speak step synthesizes on its own."""

    __tablename__ = "step_pieces"

    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[PieceStatus] = mapped_column(Choice(PieceStatus, "piece_status"))
    sha256: Mapped[str | None] = mapped_column(String(64))  # its audio, once synthesized
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class Result(Base):
    """The text or JSON output of a step; the primary key makes it exactly one."""

    __tablename__ = "results"

    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    task_id: Mapped[str | None] = mapped_column(String(155))
    created_at: Mapped[datetime]


class Artifact(Base):
    """A blob (audio, a reference voice) named by its content's sha256."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate_hz: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(index=True)
    # sha256 of the artifact's chunk manifest (sparkjobs.artifacts.manifest), so a
    # fetch trusts neither the source nor the manifest it serves; None until registered.
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))

    locations: Mapped[list[ArtifactLocation]] = relationship(passive_deletes=True)


class ArtifactLocation(Base):
    """Where a node keeps a copy of an artifact, and when that copy was last checked."""

    __tablename__ = "artifact_locations"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("artifacts.sha256", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)
    path: Mapped[str] = mapped_column(Text)
    verified_at: Mapped[datetime]


class StepArtifact(Base):
    """A step's use of an artifact: the audio it produced, or a voice it read."""

    __tablename__ = "step_artifacts"

    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    # RESTRICT: an artifact that a step still references cannot be deleted.
    sha256: Mapped[str] = mapped_column(
        ForeignKey("artifacts.sha256", ondelete="RESTRICT"), primary_key=True, index=True
    )
    role: Mapped[ArtifactRole] = mapped_column(Choice(ArtifactRole, "artifact_role"))
    name: Mapped[str | None] = mapped_column(String(200))

    artifact: Mapped[Artifact] = relationship()


class JobRecord(Base):
    """A job as the active scheduler last saw it, with its paused flag (set by the CLI)."""

    __tablename__ = "jobs"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(200))  # "cron 0 7 * * *", "every 1h"
    tz: Mapped[str] = mapped_column(String(64))
    next_fire: Mapped[datetime | None]
    paused: Mapped[bool]
    # When `paused` last changed: slots before a resume are not misfires.
    paused_changed_at: Mapped[datetime | None]
    defined: Mapped[bool]  # False: no job file defines it any more
    last_seen: Mapped[datetime]
    file: Mapped[str] = mapped_column(Text)
    line: Mapped[int] = mapped_column(Integer)
