"""Listening to a run's speech as it is made: each piece's audio, in order, the moment
its row and artifact are recorded.

The worker that records a piece announces it on the run's audio channel after its
commit (`sparkjobs.broker.notify.announce_audio`); a listener subscribes before it
first reads SQL, reads the pieces SQL holds whenever an announcement (or the run's
end, or a slow safety poll) wakes it, and fetches each new piece from the node that
stored it. The PCM it hands out is the joined WAV's, seams faded the same way
(`sparkjobs.execution.wavjoin.piece_pcm`), so a file written as it arrives equals the
step's whole WAV. A speech of one piece arrives whole when its step succeeds.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from sparkjobs.artifacts.ensure import get_artifact
from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.notify import FinishWatch
from sparkjobs.errors import BadInput
from sparkjobs.execution.wavjoin import PieceEnds, piece_ends, piece_pcm
from sparkjobs.jobs.handoff import STREAMED
from sparkjobs.runs.info import audio_of
from sparkjobs.store.engine import reading
from sparkjobs.store.models import PieceStatus, Run, Status, Step, StepPiece
from sparkjobs.store.queries import get_run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.backends.audio import WavInfo
    from sparkjobs.config import Config

SPEECH_KINDS = ("speak", "clone")
# Announcements wake a listener at once; this slow poll only covers a lost one.
SAFETY_POLL_S = 2.0


@dataclass(frozen=True)
class Heard:
    """One stretch of a run's speech: PCM of the format given, and where it came from."""

    pcm: bytes
    sample_rate: int
    channels: int
    sample_width: int
    piece: int | None  # None: the step's whole WAV (a speech of one piece)


@dataclass(frozen=True)
class _Speech:
    status: Status  # the run's
    step: Step
    ready: dict[int, str]  # piece -> sha256 of its audio, for the pieces synthesized


def speech_step(run: Run) -> Step | None:
    """The step whose audio a listener hears: the run's last speak or clone step."""
    found = [step for step in run.steps if (step.spec or {}).get("kind") in SPEECH_KINDS]
    return found[-1] if found else None


def follow_audio(
    config: Config, run_id: uuid.UUID, *, safety_poll_s: float = SAFETY_POLL_S
) -> Iterator[Heard]:
    """Yield the speech of run `run_id` as it is made, piece by piece, in order, until
    the speech step ends (or the run does); a run that failed ends the stream early.

    Raises:
        BadInput: the run has no speak or clone step (nothing to listen to).
        UnknownRun: no such run.
        Unreachable: the database did not answer.
    """
    with store_sessions(config) as sessions, FinishWatch(config, run_id, audio=True) as watch:
        heard = 0
        held: PieceEnds | None = None  # the newest piece, its end not handed out yet
        while True:
            speech = _read(sessions, run_id)
            step = speech.step
            total = step.pieces_total
            # Streamed from a chat (`sparkjobs.execution.handoff`): pieces come before
            # their count is known, so each one's last milliseconds wait for the next.
            streamed = (step.spec or {}).get("handoff") == STREAMED
            while heard in speech.ready and ((total or 0) > 1 or streamed):
                if held is not None:
                    yield _tail(held, last=False, piece=heard - 1)
                    held = None
                wav = _fetch(config, sessions, speech.ready[heard])
                if total is not None:
                    pcm, info = piece_pcm(wav, first=heard == 0, last=heard == total - 1)
                    yield Heard(pcm, info.sample_rate, info.channels, info.sample_width, heard)
                else:
                    held = piece_ends(wav, first=heard == 0)
                    yield _heard(held.head, held.info, heard)
                heard += 1
            ended = step.status.terminal or speech.status.terminal
            if held is not None and (total is not None or ended):
                yield _tail(held, last=total is None or heard >= total, piece=heard - 1)
                held = None
            if step.status == Status.SUCCEEDED:
                if (total or 0) <= 1 and not heard:  # one piece: the step's own WAV
                    yield from _whole(config, sessions, run_id)
                return
            if ended:
                return  # failed or cancelled: what was heard is all there is
            watch.wait(safety_poll_s)


def _heard(pcm: bytes, info: WavInfo, piece: int) -> Heard:
    return Heard(pcm, info.sample_rate, info.channels, info.sample_width, piece)


def _tail(ends: PieceEnds, *, last: bool, piece: int) -> Heard:
    return _heard(ends.tail_last if last else ends.tail_more, ends.info, piece)


def _read(sessions: sessionmaker[Session], run_id: uuid.UUID) -> _Speech:
    with reading(sessions) as session:
        run = get_run(session, run_id)
        step = speech_step(run)
        if step is None:
            raise BadInput(
                f"run {run_id} ({run.job}) has no speak or clone step: there is no audio "
                "to stream. Fix: drop --stream (or --play) and print its text"
            )
        rows = session.execute(
            select(StepPiece.index, StepPiece.sha256).where(
                StepPiece.step_id == step.id,
                StepPiece.status == PieceStatus.SUCCEEDED,
                StepPiece.sha256.is_not(None),
            )
        ).all()
        return _Speech(run.status, step, {int(index): str(sha) for index, sha in rows})


def _fetch(config: Config, sessions: sessionmaker[Session], sha256: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="sparkjobs-listen-") as folder:
        path = Path(folder) / sha256
        get_artifact(config, sha256, path, streams=1, sessions=sessions)
        return path.read_bytes()


def _piece(
    config: Config, sessions: sessionmaker[Session], sha256: str, piece: int, total: int | None
) -> Heard:
    wav = _fetch(config, sessions, sha256)
    last = total is not None and piece == total - 1
    pcm, info = piece_pcm(wav, first=piece == 0, last=last)
    return Heard(pcm, info.sample_rate, info.channels, info.sample_width, piece)


def _whole(config: Config, sessions: sessionmaker[Session], run_id: uuid.UUID) -> Iterator[Heard]:
    with reading(sessions) as session:
        found = audio_of(get_run(session, run_id))
    if found is None:
        return
    pcm, info = piece_pcm(_fetch(config, sessions, found[0]), first=True, last=True)
    yield Heard(pcm, info.sample_rate, info.channels, info.sample_width, None)
