"""Cancelling a running run: SQL first, then a revoke; the running step stops at a checkpoint."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.store.models import AttemptStatus, PieceStatus, StepPiece
from sparkjobs.store.queries import get_run
from tests.integration.cli.support import ok, poll
from tests.integration.jobs.test_runs import SENTENCES
from tests.support.cluster import Cluster
from tests.support.sim import RunningSims

pytestmark = pytest.mark.redis


def test_cancel_stops_a_running_long_speech_and_wait_says_so(
    workers: Cluster, cluster_sims: RunningSims, tmp_path: Path
) -> None:
    # Slow speech: each piece takes long enough that the run is still going when
    # the cancel arrives (the orpheus service takes one piece at a time).
    cluster_sims.set_faults("orpheus-backend", slow_factor=30.0)
    text = tmp_path / "long.txt"
    text.write_text(" ".join(SENTENCES))
    run_id = uuid.UUID(ok(workers.sparkjobs("submit", "speak", "--file", str(text))).strip())
    config = workers.config

    def pieces() -> list[StepPiece]:
        with store_sessions(config) as sessions, sessions() as session:
            run = get_run(session, run_id)
            return list(session.query(StepPiece).filter_by(step_id=run.steps[0].id))

    poll("a piece synthesized", lambda: any(p.status == PieceStatus.SUCCEEDED for p in pieces()))
    cancelled = json.loads(ok(workers.sparkjobs("cancel", str(run_id), "--json")))
    assert set(cancelled) == {"run_id", "previous_status", "status", "cancelled", "revoked"}
    assert (cancelled["previous_status"], cancelled["status"], cancelled["cancelled"]) == (
        "running",
        "cancelled",
        True,
    )
    # The task ids of pieces running at that moment (possibly none, between pieces).
    assert isinstance(cancelled["revoked"], list)

    def settled() -> bool:  # every attempt closed: nothing runs for this run any more
        with store_sessions(config) as sessions, sessions() as session:
            run = get_run(session, run_id)
        return all(a.finished_at is not None for a in run.steps[0].attempts)

    poll("the running piece noticed", settled)
    with store_sessions(config) as sessions, sessions() as session:
        run = get_run(session, run_id)
    [step] = run.steps
    assert (run.status.value, step.status.value) == ("cancelled", "cancelled")
    done = [p for p in pieces() if p.status == PieceStatus.SUCCEEDED]
    assert 0 < len(done) < (step.pieces_total or 0)  # the rest were never synthesized
    assert not [link for link in step.artifacts if link.name == "audio"]  # no join
    pieces_tried = [a for a in step.attempts if a.piece is not None]
    assert len(pieces_tried) < (step.pieces_total or 0)  # queued pieces never started
    assert all(a.status != AttemptStatus.RUNNING for a in step.attempts)

    waited = workers.sparkjobs("wait", str(run_id))
    assert waited.returncode == 1
    assert "cancelled" in waited.stderr
    again = json.loads(ok(workers.sparkjobs("cancel", str(run_id), "--json")))
    assert (again["cancelled"], again["status"]) == (False, "cancelled")
