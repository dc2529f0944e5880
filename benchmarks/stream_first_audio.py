"""First audio of a long streamed speech at the caller, next to a direct call.

A real cluster (`embedded_cluster`: a private redis-server, SQLite, a config), a
`sparkjobs worker` process for each node (spark1, spark2) and the simulated Orpheus
front-end with its completions backend (`SimHost`, in this process, serial as the real
one, a whole WAV after a time proportional to the text). The text is about 3,000 words
of distinct sentences, generated deterministically.

Each round, in alternating order:

- sparkjobs: `python -m sparkjobs submit speak --file LONG.txt --out -` as a child
  (`SPARKJOBS_CONFIG` names the bench config), its stdout read until the first PCM
  bytes after the 44-byte WAV header. Timed two ways: from the child's start (what a
  user at a terminal feels: Python's imports included) and from the run's creation
  (`created_at` of its row, written by `submit_job`; "from submit"). Then the child is
  killed, the run cancelled (`cancel_run`, as `sparkjobs cancel` does) and the round
  waits until the run has ended and Orpheus has been idle for a while, so that the next
  round starts with Orpheus idle.
- direct (the baseline): `POST /v1/audio/speech` to the same simulator with the same
  first piece (`speech_pieces(text)[0]`) on a new connection (the httpx client, whose
  TLS context costs tens of ms, is built before the clock starts), timed to the first
  byte of audio after the header.

Also per round: `python -m sparkjobs --help` (the CLI's start-up) and `python -c pass`
(the interpreter alone), to show where the time before submit goes. One warm-up round
is not counted. The last line is the ratio of the medians, from submit, sparkjobs /
direct; the line before it the same from the child's start.

`--time-scale 8` (the default) makes a 120-character piece take about 1 s of synthesis
instead of about 7.8 s; every simulated duration is divided by it.

    .venv/bin/python benchmarks/stream_first_audio.py [--rounds 5] [--time-scale 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import embedded_cluster

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config
    from sparkjobs.sim.faults import Stats

HEADER_BYTES = 44
FIRST_AUDIO_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 120.0
IDLE_FOR_S = 1.0
WHOLE = "sparkjobs from the child's start"
SUBMIT = "sparkjobs from submit"

_SUBJECTS = (
    "The old ferryman", "A quiet librarian", "The youngest baker", "Our patient neighbour",
    "A tired surveyor", "The village doctor", "A curious student", "The night watchman",
    "An elderly painter", "The harbour pilot", "A travelling tailor", "The lighthouse keeper",
)  # fmt: skip
_VERBS = (
    "carried", "repaired", "described", "counted", "painted",
    "measured", "forgot", "discovered", "returned", "polished",
)  # fmt: skip
_OBJECTS = (
    "a basket of green apples", "the broken clock", "seven letters from the capital",
    "a map of the northern hills", "the silver kettle", "a box of faded photographs",
    "the wooden boat", "a jar of wild honey", "the iron gate", "a bundle of dry reeds",
    "the copper lantern", "a sack of winter wheat", "the linen sails",
    "a pair of leather boots", "the stone bench",
)  # fmt: skip
_PLACES = (
    "before the morning bell rang over the square",
    "while the rain drummed softly on the roofs",
    "after the last train had left the station",
    "when the fog rolled in from the grey sea",
    "as the market stalls were closing for the night",
    "long before anyone else in the town was awake",
    "just as the river began to rise again",
    "under the tall chestnut trees by the mill",
    "during the slow hours of a hot afternoon",
    "beside the narrow bridge at the edge of town",
    "while the children sang in the old chapel",
)  # fmt: skip


def long_text(words: int) -> str:
    """About `words` words of distinct sentences, in paragraphs of six; the same each time."""
    sentences: list[str] = []
    count = 0
    index = 0
    while count < words:
        # Mixed radices: (subject, verb, object) differ for every index below 1800.
        subject = _SUBJECTS[index % 12]
        verb = _VERBS[(index // 12) % 10]
        thing = _OBJECTS[(index // 120) % 15]
        place = _PLACES[index % 11]
        sentence = f"{subject} {verb} {thing} {place}."
        sentences.append(sentence)
        count += len(sentence.split())
        index += 1
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    return "\n\n".join(paragraphs) + "\n"


@dataclass
class Figures:
    """Milliseconds per counted round, one list per figure."""

    lists: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value_ms: float) -> None:
        self.lists.setdefault(name, []).append(value_ms)

    def line(self, name: str) -> str:
        values = self.lists.get(name, [])
        if not values:
            return "n/a"
        return f"median {median(values):8.1f} ms  (min {min(values):.1f}, max {max(values):.1f})"


def timed_exit(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds from starting `argv` to its exit (output discarded)."""
    started = time.monotonic()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=60)  # fmt: skip
    return (time.monotonic() - started) * 1000


def first_pcm(read_fd: int, deadline: float) -> float:
    """Read `read_fd` until a byte past the WAV header arrives; the monotonic time then."""
    got = 0
    while got <= HEADER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"no audio after {FIRST_AUDIO_TIMEOUT_S:g} s")
        ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            raise SystemExit("the CLI closed its stdout before any audio")
        got += len(chunk)
    return time.monotonic()


def direct_round(url: str, text: str, stats: Stats, figures: Figures, counted: bool) -> None:
    """The same first piece straight to Orpheus, to the first byte of audio."""
    import httpx

    body = {"model": "orpheus", "input": text, "voice": "tara", "response_format": "wav"}
    stats.reset()
    client = httpx.Client(timeout=FIRST_AUDIO_TIMEOUT_S)  # its TLS set-up is not timed
    started = time.monotonic()
    with client, client.stream("POST", f"{url}/v1/audio/speech", json=body) as reply:
        reply.raise_for_status()
        chunks, got = reply.iter_raw(), 0
        for chunk in chunks:
            got += len(chunk)
            if got > HEADER_BYTES:
                break
        arrived = time.monotonic()
        assert got > HEADER_BYTES, "an empty WAV"
        for _ in chunks:
            pass  # the rest of the WAV: the connection ends cleanly
    if counted:
        assert stats.first_at is not None
        assert stats.last_at is not None
        figures.add("direct", (arrived - started) * 1000)
        figures.add("direct: Orpheus on the piece", (stats.last_at - stats.first_at) * 1000)


def newest_run(sessions: sessionmaker[Session], seen: set[uuid.UUID]) -> tuple[uuid.UUID, datetime]:
    from sqlalchemy import select as sql_select

    from sparkjobs.store.engine import reading
    from sparkjobs.store.models import Run

    with reading(sessions) as session:
        rows = session.execute(sql_select(Run.id, Run.created_at)).all()
    fresh = [(row.id, row.created_at) for row in rows if row.id not in seen]
    if len(fresh) != 1:
        raise SystemExit(f"expected one new run, found {len(fresh)}")
    seen.add(fresh[0][0])
    return fresh[0]


def settle(
    config: Config, sessions: sessionmaker[Session], run_id: uuid.UUID, stats: Stats
) -> None:
    """Cancel the run, wait for its end and for Orpheus idle for `IDLE_FOR_S`."""
    from sparkjobs.runs.control import cancel_run
    from sparkjobs.store.engine import reading
    from sparkjobs.store.models import TERMINAL, Run

    cancel_run(config, run_id)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit(f"run {run_id} or Orpheus still busy after {SETTLE_TIMEOUT_S:g} s")
        with reading(sessions) as session:
            run = session.get(Run, run_id)
            ended = run is not None and run.status in TERMINAL
        idle_since = (idle_since or now) if stats.in_flight == 0 else None
        if ended and idle_since is not None and now - idle_since >= IDLE_FOR_S:
            return
        time.sleep(0.05)


def on_monotonic(moment: datetime) -> float:
    """A UTC time written to SQL, on this process' monotonic clock."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.timestamp() - (time.time() - time.monotonic())


def sparkjobs_round(
    config: Config,
    sessions: sessionmaker[Session],
    text_path: Path,
    env: dict[str, str],
    stats: Stats,
    seen: set[uuid.UUID],
    figures: Figures,
    counted: bool,
) -> None:
    """`submit speak --file ... --out -` to its first PCM bytes; then cancel and settle."""
    assert stats.in_flight == 0, "Orpheus is not idle at the start of a round"
    stats.reset()
    argv = [sys.executable, "-m", "sparkjobs", "submit", "speak", "--file", str(text_path),
            "--out", "-"]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert child.stdout is not None
            arrived = first_pcm(child.stdout.fileno(), started + FIRST_AUDIO_TIMEOUT_S)
            orpheus_in, orpheus_out = stats.first_at, stats.last_at
        except SystemExit:
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace")[-2000:])
            raise
        finally:
            child.kill()
            child.wait(timeout=30)
            if child.stdout is not None:
                child.stdout.close()
    run_id, created_at = newest_run(sessions, seen)
    submitted = on_monotonic(created_at)
    if counted:
        assert orpheus_in is not None
        assert orpheus_out is not None
        figures.add(WHOLE, (arrived - started) * 1000)
        figures.add(SUBMIT, (arrived - submitted) * 1000)
        figures.add("child start to the run's row (imports, config, checks)",
                    (submitted - started) * 1000)  # fmt: skip
        figures.add("run's row to Orpheus getting piece 0 (queue, worker, line)",
                    (orpheus_in - submitted) * 1000)  # fmt: skip
        figures.add("Orpheus on piece 0", (orpheus_out - orpheus_in) * 1000)
        figures.add("Orpheus's reply to the first PCM at the caller (record, announce, "
                    "listener, fetch)", (arrived - orpheus_out) * 1000)  # fmt: skip
    settle(config, sessions, run_id, stats)


def start_worker(config_path: Path, node: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "sparkjobs", "--config", str(config_path), "worker",
            "--node", node, "--loglevel", "WARNING"]  # fmt: skip
    with log.open("wb") as sink:
        return subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)


def wait_workers(config: Config, nodes: tuple[str, ...], timeout_s: float = 90) -> None:
    from sparkjobs.broker.app import create_app

    app = create_app(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        names = {name.split("@")[0] for reply in replies for name in reply}
        if all(node in names for node in nodes):
            return
    raise SystemExit(f"workers of {', '.join(nodes)} not all online after {timeout_s:g} s")


def run(args: argparse.Namespace, figures: Figures) -> tuple[int, str]:
    """Set up, measure, tear down; the first piece's length and text."""
    from sparkjobs.config import load_config
    from sparkjobs.execution.sentences import speech_pieces
    from sparkjobs.sim import SimHost
    from sparkjobs.store.engine import shared_sessions

    text = long_text(args.words)
    piece = speech_pieces(text)[0]
    with tempfile.TemporaryDirectory(prefix="sjb-") as tmp, embedded_cluster(Path(tmp)) as cluster:
        text_path = Path(tmp) / "long.txt"
        text_path.write_text(text)
        config = load_config(cluster.config_path)
        env = {**os.environ, "SPARKJOBS_CONFIG": str(cluster.config_path)}
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        host = SimHost(config, ("orpheus",), {"time_scale": args.time_scale})
        asyncio.run_coroutine_threadsafe(host.start(), loop).result(30)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            asyncio.run_coroutine_threadsafe(host.ready(), loop).result(30)
            for node in ("spark1", "spark2"):
                workers.append(start_worker(cluster.config_path, node, Path(tmp) / f"{node}.log"))
            wait_workers(config, ("spark1", "spark2"))
            stats = host["orpheus"].sim.stats
            url = f"http://127.0.0.1:{cluster.ports['orpheus']}"
            sessions = shared_sessions(config.database)
            seen: set[uuid.UUID] = set()
            for number in range(args.rounds + 1):  # round 0 warms both paths, not counted
                counted = number > 0
                help_ms = timed_exit([sys.executable, "-m", "sparkjobs", "--help"], env)
                bare_ms = timed_exit([sys.executable, "-c", "pass"], env)
                sides = ["sparkjobs", "direct"] if number % 2 else ["direct", "sparkjobs"]
                for side in sides:
                    if side == "direct":
                        direct_round(url, piece, stats, figures, counted)
                    else:
                        sparkjobs_round(config, sessions, text_path, env, stats, seen,
                                        figures, counted)  # fmt: skip
                if counted:
                    figures.add("python -m sparkjobs --help", help_ms)
                    figures.add("python -c pass", bare_ms)
                    lists = figures.lists
                    print(
                        f"round {number} ({sides[0]} first): sparkjobs "
                        f"{lists[WHOLE][-1]:.0f} ms from the start, {lists[SUBMIT][-1]:.0f} ms "
                        f"from submit; direct {lists['direct'][-1]:.0f} ms; --help "
                        f"{help_ms:.0f} ms",
                        flush=True,
                    )
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=10)
            asyncio.run_coroutine_threadsafe(host.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
    return len(text.split()), piece


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time-scale", type=float, default=8.0)
    parser.add_argument("--words", type=int, default=3000)
    args = parser.parse_args()
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    figures = Figures()
    words, piece = run(args, figures)
    print(f"started {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"rounds: {args.rounds} (after one warm-up round), time scale {args.time_scale:g}, "
          f"{words} words; first piece {len(piece)} characters: {piece!r}")  # fmt: skip
    order = (
        "direct", "direct: Orpheus on the piece", WHOLE,
        SUBMIT, "child start to the run's row (imports, config, checks)",
        "run's row to Orpheus getting piece 0 (queue, worker, line)", "Orpheus on piece 0",
        "Orpheus's reply to the first PCM at the caller (record, announce, listener, fetch)",
        "python -m sparkjobs --help", "python -c pass",
    )  # fmt: skip
    for name in order:
        print(f"  {name}: {figures.line(name)}")
    direct = median(figures.lists["direct"])
    whole = median(figures.lists[WHOLE])
    print(f"ratio from the child's start (sparkjobs / direct): {whole / direct:.2f}")
    print(f"ratio {median(figures.lists[SUBMIT]) / direct:.2f}")


if __name__ == "__main__":
    main()
