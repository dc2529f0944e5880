"""A run page over a migrated SQLite store holding rows the tests insert."""

from __future__ import annotations

import io
import tomllib
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from sparkjobs.artifacts.register import node_root, register_file
from sparkjobs.config import Config, load_config
from sparkjobs.dispatch.health import Reading, ServerState
from sparkjobs.dispatch.status import ServiceStatus, status_of
from sparkjobs.store.artifacts import link_artifact
from sparkjobs.store.attempts import finish_step, record_result
from sparkjobs.store.engine import open_store
from sparkjobs.store.models import RunKind, Status, Trigger
from sparkjobs.store.runs import add_step, create_run, finish_run
from sparkjobs.store.schema import upgrade
from sparkjobs.web.app import create_app
from tests.support.cluster import cluster_toml
from tests.support.tables import merge

T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
JOB_FILE = """
from sparkjobs.jobs.define import job, chat, speak, cron

job("morning-briefing", schedule=cron("0 7 * * *"), description="news, read aloud",
    steps=[chat("Write a short briefing"), speak("{previous}")])
job("evening-digest", schedule=cron("0 19 * * *"), paused=True, steps=[chat("Digest")])
"""


def wav_bytes(seconds: float = 1.0, rate: int = 24000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(int(seconds * rate) * 2))
    return buffer.getvalue()


def write_config(tmp_path: Path, extra: str = "") -> Path:
    schedules = tmp_path / "schedules"
    schedules.mkdir(exist_ok=True)
    (schedules / "briefing.py").write_text(JOB_FILE)
    path = tmp_path / "sparkjobs.toml"
    text = cluster_toml(
        data_dir=str(tmp_path / "data"), schedules_dir=str(schedules),
        database_url=f"sqlite:///{tmp_path / 'sparkjobs.db'}",
        broker_url="redis://127.0.0.1:1/0",
    )  # fmt: skip
    path.write_text(tomli_w.dumps(merge(tomllib.loads(text), tomllib.loads(extra))))
    return path


@dataclass
class Store:
    """The test's config and store, and the ids of the rows inserted."""

    config: Config
    sessions: sessionmaker[Session]
    speak_run: uuid.UUID
    failed_run: uuid.UUID
    queued_run: uuid.UUID
    audio_sha256: str


def fill(config: Config) -> Store:
    upgrade(config.database)
    sessions = open_store(config.database)
    audio = register_file(sessions, node_root(config, "spark2"), "spark2", wav_bytes(),
                          media_type="audio/wav").sha256  # fmt: skip
    with sessions.begin() as session:
        run, _ = create_run(session, job="morning-briefing", kind=RunKind.PIPELINE,
                            trigger=Trigger.SCHEDULE, scheduled_for=T0, now=T0)  # fmt: skip
        chat = add_step(session, run.id, 0, service="gemma", node="spark1", name="chat", now=T0)
        chat.spec = {"kind": "chat"}
        speak = add_step(session, run.id, 1, service="orpheus", node="spark2", name="speak", now=T0)
        speak.spec = {"kind": "speak"}
        record_result(session, chat.id, text="Grey skies over the river; markets quiet.", now=T0)
        link_artifact(session, speak.id, audio, name="audio")
        for step, latency in ((chat, 1200.0), (speak, 2400.0)):
            finish_step(session, step.id, status=Status.SUCCEEDED, now=T0 + timedelta(seconds=5))
            step.latency_ms = latency
        run.started_at = T0
        finish_run(session, run.id, status=Status.SUCCEEDED, now=T0 + timedelta(seconds=5))
        speak_id = run.id

        failed, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.API,
                               now=T0 + timedelta(minutes=1))  # fmt: skip
        step = add_step(session, failed.id, 0, service="orpheus", node="spark2", name="speak")
        finish_step(session, step.id, status=Status.FAILED, error="orpheus answered 500")
        finish_run(session, failed.id, status=Status.FAILED, error="step 1 failed: 500")
        failed_id = failed.id

        queued, _ = create_run(session, job="chat", kind=RunKind.CHAT, trigger=Trigger.SUBMIT,
                               now=T0 + timedelta(minutes=2))  # fmt: skip
        add_step(session, queued.id, 0, service="gemma", node="spark1", name="chat")
        queued_id = queued.id
    return Store(config, sessions, speak_id, failed_id, queued_id, audio)


# What the workers published, as a test states it: clone down, orpheus busy (a serial
# server holding its one slot), qwen with no worker of its node publishing, gemma up.
FAKE_READINGS = {
    "gemma": (ServerState.UP, "", False),
    "orpheus": (ServerState.UP, "the probe waited behind a call in progress", True),
    "clone": (ServerState.DOWN, "connection refused", False),
}
FAKE_FIXES = {"clone": "nothing listens at http://127.0.0.1:8004: start the qwen-clone server"}


def fake_readings(config: Config) -> list[ServiceStatus]:
    """The services' published health, without Redis: the readings of FAKE_READINGS."""
    now = datetime.now(UTC).timestamp()
    found = []
    for name, spec in config.services.items():
        said = FAKE_READINGS.get(name)
        reading = (
            None
            if said is None
            else Reading(name, said[0], said[1], now - 42, now, said[2], FAKE_FIXES.get(name, ""))
        )
        found.append(status_of(name, spec.node, spec.kind, reading))
    return found


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, Store]]]:
    """A TestClient for a config with `extra` TOML appended, over a filled store."""
    clients: list[TestClient] = []

    def make(extra: str = "", **options: str) -> tuple[TestClient, Store]:
        config = load_config(write_config(tmp_path, extra))
        store = fill(config) if not clients else Store(config, open_store(config.database),
                                                        *_ids(stores[0]))  # fmt: skip
        stores.append(store)
        client = TestClient(create_app(config, readings=fake_readings), **options)  # type: ignore[arg-type]
        clients.append(client)
        return client, store

    stores: list[Store] = []
    yield make
    for client in clients:
        client.close()


def _ids(store: Store) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, str]:
    return store.speak_run, store.failed_run, store.queued_run, store.audio_sha256
