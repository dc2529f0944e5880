"""A chat streamed into speech: first audio and the whole run, each next to a baseline.

A real cluster (`embedded_cluster`: a private redis-server, SQLite, a config), a
`sparkjobs worker` process for each node (spark1 hosts the vLLM service `gemma`, spark2
the Orpheus service) and the simulators of both (`SimHost`, in this process, at
`--time-scale`): vLLM Gemma at its seed profile's speed (`[sim.gemma] tokens_per_s = 52`
written into the config: 52 tokens a second, single stream), and the Orpheus front-end,
serial as the real one, a whole WAV after a time proportional to the text (its backend
at 90 tokens a second: about 0.9 s of synthesis per second of speech).

The job is `job(steps=[chat(PROMPT, max_tokens=160), speak("{previous}")])`, a spoken
briefing: the simulator answers PROMPT with 131 tokens (it stops by itself; 160 is the
most a simulated reply has), 705 characters in five pieces, about 50 s of speech at
real speed, and about 2.5 s of generation at 52 tokens a second. Both runs are
submitted with `submit_job(..., interactive=True)`, as `submit ... --out -` does.

Each round, in alternating order (odd rounds as listed, even rounds reversed):

- direct (the baseline of first audio): a streaming chat completion of the same
  prompt, model and max_tokens straight to the LLM simulator (`POST
  /v1/chat/completions` on a new connection), its deltas fed to a `PieceCutter` and
  timed to the first piece it hands out (the end of the first sentence, as the chat's
  worker decides it); then that piece straight to the Orpheus simulator (`POST
  /v1/audio/speech`, a new connection), timed to its first byte of audio after the WAV
  header. The baseline is the sum of the two. (The httpx clients are built before the
  clocks start.)
- streamed: the job, listened to in this process with
  `sparkjobs.runs.listen.follow_audio` (a thread started as soon as `submit_job`
  returns) while `wait_for_run` waits for its end. First audio: the run's creation
  (`created_at` of its row) to the first PCM bytes the listener gets. Whole run: the
  creation to `wait_for_run` returning.
- batch: the same job with `stream=False`, listened to and waited for the same way.

Between sides the benchmark waits until both simulators have been idle for 1 s. One
warm-up round is not counted. Figures are medians over the rounds, min-max in
brackets; the parts of a side are taken from the simulators' own request times (same
process, same clock). The last two lines are the ratios of the medians: first audio,
streamed pipeline / direct (goal at most 1.2), then the whole run, streamed / batch
(goal at most 0.75). The line before them is the best ratio the simulators' own times
allow (no scheduler at all): the LLM to its first sentence plus Orpheus busy, against
the LLM's whole reply plus Orpheus busy.

`--time-scale 2` (the default) divides every simulated duration by 2: a round takes
about 55 s, so 5 rounds and the warm-up take about 6 minutes.

    .venv/bin/python benchmarks/pipeline_stream.py [--rounds 5] [--time-scale 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

PROMPT = "Read me this morning's briefing: the weather, the news and my calendar."
MODEL = "gemma-4-26b-a4b"  # the gemma service's first model: what the chat step asks
VOICE = "tara"  # the orpheus service's first voice: what the speak step uses
HEADER_BYTES = 44
REQUEST_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
SETTLE_TIMEOUT_S = 120.0
IDLE_FOR_S = 1.0
SIMULATED = ("gemma", "orpheus")

DIRECT = "direct: LLM to its first sentence + Orpheus to that piece's first audio"
DIRECT_LLM = "direct: LLM to the end of its first sentence (PieceCutter)"
DIRECT_TTS = "direct: Orpheus to the first audio byte of that piece"
DIRECT_WHOLE = "direct: LLM to the end of its whole reply"
FIRST = "streamed: first audio at the caller, from the run's creation"
WHOLE = "streamed: whole run, creation to wait_for_run returning"
BATCH = "batch (stream=False): whole run, creation to wait_for_run returning"
BATCH_FIRST = "batch (stream=False): first audio at the caller, from the run's creation"


@dataclass
class Figures:
    """Milliseconds per counted round, one list per figure."""

    lists: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value_ms: float) -> None:
        self.lists.setdefault(name, []).append(value_ms)

    def median(self, name: str) -> float:
        return median(self.lists[name])

    def line(self, name: str) -> str:
        values = self.lists.get(name, [])
        if not values:
            return f"{name}: n/a"
        return (f"{name}: median {median(values):.0f} ms "
                f"({min(values):.0f}-{max(values):.0f})")  # fmt: skip


@dataclass
class Timeline:
    """When each request to one simulator arrived and ended (monotonic seconds)."""

    enters: list[float] = field(default_factory=list)
    leaves: list[float] = field(default_factory=list)

    @classmethod
    def watch(cls, stats: Stats) -> Timeline:
        """Record the requests `stats` counts from now on (the simulator is in this
        process: its `enter` and `leave` are wrapped on the instance)."""
        timeline = cls()
        enter, leave = stats.enter, stats.leave

        def on_enter() -> None:
            timeline.enters.append(time.monotonic())
            enter()

        def on_leave() -> None:
            leave()
            timeline.leaves.append(time.monotonic())

        vars(stats).update(enter=on_enter, leave=on_leave)
        return timeline

    def clear(self) -> None:
        self.enters.clear()
        self.leaves.clear()


@dataclass
class Sims:
    """The two simulators' counters and request times."""

    llm: Stats
    tts: Stats
    llm_times: Timeline
    tts_times: Timeline

    def reset(self) -> None:
        assert self.llm.in_flight == 0, "the LLM simulator is busy"
        assert self.tts.in_flight == 0, "the Orpheus simulator is busy"
        for stats in (self.llm, self.tts):
            stats.reset()
        self.llm_times.clear()
        self.tts_times.clear()

    def settle(self) -> None:
        """Wait until both simulators have been idle for `IDLE_FOR_S`."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        idle_since: float | None = None
        while True:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"the simulators still busy after {SETTLE_TIMEOUT_S:g} s")
            idle = self.llm.in_flight == 0 and self.tts.in_flight == 0
            idle_since = (idle_since or now) if idle else None
            if idle_since is not None and now - idle_since >= IDLE_FOR_S:
                return
            time.sleep(0.05)


def on_monotonic(moment: datetime) -> float:
    """A UTC time written to SQL, on this process' monotonic clock."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.timestamp() - (time.time() - time.monotonic())


def llm_first_piece(url: str, max_tokens: int) -> tuple[float, float, str, str]:
    """A streaming chat completion of PROMPT, cut as the chat's worker cuts it.

    Returns:
        Seconds to the first piece, seconds to the end of the stream, the first
        piece, and the whole reply.
    """
    import httpx

    from sparkjobs.execution.cutter import PieceCutter

    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    cutter = PieceCutter()
    piece: str | None = None
    first_s = 0.0
    parts: list[str] = []
    client = httpx.Client(timeout=REQUEST_TIMEOUT_S)  # its TLS set-up is not timed
    started = time.monotonic()
    with client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            for choice in json.loads(line[len("data: ") :]).get("choices", []):
                delta = (choice.get("delta") or {}).get("content") or ""
                parts.append(delta)
                if piece is None and delta:
                    decided = cutter.feed(delta)
                    if decided:
                        piece, first_s = decided[0], time.monotonic() - started
        ended = time.monotonic() - started
    if piece is None:  # a reply of one sentence: decided at its end
        piece, first_s = cutter.finish()[0], ended
    return first_s, ended, piece, "".join(parts)


def tts_first_audio(url: str, text: str) -> float:
    """`text` straight to Orpheus: seconds to the first byte of audio after the header."""
    import httpx

    body = {"model": "orpheus", "input": text, "voice": VOICE, "response_format": "wav"}
    client = httpx.Client(timeout=REQUEST_TIMEOUT_S)  # its TLS set-up is not timed
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
    return arrived - started


def direct_round(
    urls: dict[str, str], max_tokens: int, sims: Sims, figures: Figures, counted: bool
) -> str:
    """The baseline: the LLM to its first sentence, then that sentence to Orpheus."""
    sims.reset()
    first_s, whole_s, piece, _ = llm_first_piece(urls["gemma"], max_tokens)
    tts_s = tts_first_audio(urls["orpheus"], piece)
    if counted:
        figures.add(DIRECT_LLM, first_s * 1000)
        figures.add(DIRECT_TTS, tts_s * 1000)
        figures.add(DIRECT, (first_s + tts_s) * 1000)
        figures.add(DIRECT_WHOLE, whole_s * 1000)
    sims.settle()
    return piece


class Listener(threading.Thread):
    """`follow_audio` of one run, as a caller with `--out -` does: when its first PCM
    bytes came, and how many bytes in all."""

    def __init__(self, config: Config, run_id: uuid.UUID) -> None:
        super().__init__(daemon=True)
        self.config, self.run_id = config, run_id
        self.first_at: float | None = None
        self.pcm_bytes = 0
        self.bytes_per_s = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from sparkjobs.runs.listen import follow_audio

        try:
            for heard in follow_audio(self.config, self.run_id):
                if heard.pcm and self.first_at is None:
                    self.first_at = time.monotonic()
                self.pcm_bytes += len(heard.pcm)
                self.bytes_per_s = heard.sample_rate * heard.channels * heard.sample_width
        except BaseException as exc:  # handed to the main thread
            self.error = exc


@dataclass(frozen=True)
class Outcome:
    """What a pipeline run made: its pieces and the speech the listener heard."""

    pieces: list[str]
    audio_s: float


def pipeline_round(
    config: Config,
    sessions: sessionmaker[Session],
    stream: bool,
    max_tokens: int,
    sims: Sims,
    figures: Figures,
    counted: bool,
) -> Outcome:
    """Submit the chat -> speak job, listen to it and wait for its end."""
    from sqlalchemy import select as sql_select

    from sparkjobs.jobs.define import chat, job, speak
    from sparkjobs.runs.submit import submit_job
    from sparkjobs.runs.wait import wait_for_run
    from sparkjobs.store.engine import reading
    from sparkjobs.store.models import Run, Status, StepPiece

    name = "bench-pipeline-streamed" if stream else "bench-pipeline-batch"
    definition = job(name, steps=[chat(PROMPT, max_tokens=max_tokens), speak("{previous}")],
                     stream=stream)  # fmt: skip
    sims.reset()
    run_id = submit_job(config, definition, trigger="submit", interactive=True,
                        sessions=sessions).run_id  # fmt: skip
    listener = Listener(config, run_id)
    listener.start()
    run = wait_for_run(config, run_id, timeout_s=RUN_TIMEOUT_S, sessions=sessions)
    ended = time.monotonic()
    listener.join(timeout=60)
    if run.status != Status.SUCCEEDED:
        raise SystemExit(f"run {run_id} ({name}) ended {run.status.value}: {run.error}")
    if listener.error is not None or listener.first_at is None or listener.is_alive():
        raise SystemExit(f"the listener of run {run_id} ({name}) heard nothing: "
                         f"{listener.error!r}")  # fmt: skip
    speak_step = max(run.steps, key=lambda step: step.index)
    with reading(sessions) as session:
        created_at = session.scalar(sql_select(Run.created_at).where(Run.id == run_id))
        texts = session.scalars(sql_select(StepPiece.text)
                                .where(StepPiece.step_id == speak_step.id)
                                .order_by(StepPiece.index)).all()  # fmt: skip
    assert created_at is not None
    created = on_monotonic(created_at)
    llm, tts = sims.llm_times, sims.tts_times
    assert sims.tts.max_in_flight == 1, "Orpheus got more than one request at once"
    if counted:
        side = "streamed" if stream else "batch (stream=False)"
        busy_ms = sims.tts.busy_s * 1000
        span_ms = (tts.leaves[-1] - tts.enters[0]) * 1000
        figures.add(FIRST if stream else BATCH_FIRST, (listener.first_at - created) * 1000)
        figures.add(WHOLE if stream else BATCH, (ended - created) * 1000)
        figures.add(f"{side}: the run's row to the LLM getting the chat (queue, worker, "
                    "prologue)", (llm.enters[0] - created) * 1000)  # fmt: skip
        figures.add(f"{side}: the chat at the LLM", (llm.leaves[0] - llm.enters[0]) * 1000)
        figures.add(f"{side}: the LLM getting the chat to Orpheus getting piece 0",
                    (tts.enters[0] - llm.enters[0]) * 1000)  # fmt: skip
        figures.add(f"{side}: the LLM's end to Orpheus getting piece 0",
                    (tts.enters[0] - llm.leaves[0]) * 1000)  # fmt: skip
        figures.add(f"{side}: Orpheus on piece 0", (tts.leaves[0] - tts.enters[0]) * 1000)
        figures.add(f"{side}: Orpheus's reply of piece 0 to the first PCM at the caller "
                    "(record, announce, listener, fetch)",
                    (listener.first_at - tts.leaves[0]) * 1000)  # fmt: skip
        figures.add(f"{side}: Orpheus busy", busy_ms)
        figures.add(f"{side}: Orpheus idle between its first request and its last",
                    span_ms - busy_ms)  # fmt: skip
        figures.add(f"{side}: Orpheus's last reply to the run's end (join, record, "
                    "announce, wait)", (ended - tts.leaves[-1]) * 1000)  # fmt: skip
    sims.settle()
    audio_s = listener.pcm_bytes / listener.bytes_per_s if listener.bytes_per_s else 0.0
    return Outcome(list(texts), audio_s)


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


@dataclass
class Seen:
    """What the rounds made, checked alike every round."""

    first_pieces: set[str] = field(default_factory=set)
    streamed: list[Outcome] = field(default_factory=list)
    batch: list[Outcome] = field(default_factory=list)


def run(args: argparse.Namespace, figures: Figures, seen: Seen) -> None:
    """Set up, measure, tear down."""
    from sparkjobs.config import load_config
    from sparkjobs.sim import SimHost
    from sparkjobs.store.engine import shared_sessions

    with tempfile.TemporaryDirectory(prefix="sjb-") as tmp, embedded_cluster(Path(tmp)) as cluster:
        with cluster.config_path.open("a") as config_file:  # the LLM's speed, stated
            config_file.write(f"[sim.gemma]\ntokens_per_s = {args.tokens_per_s}\n")
        config = load_config(cluster.config_path)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        host = SimHost(config, SIMULATED, {"time_scale": args.time_scale})
        asyncio.run_coroutine_threadsafe(host.start(), loop).result(30)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            asyncio.run_coroutine_threadsafe(host.ready(), loop).result(30)
            for node in ("spark1", "spark2"):
                workers.append(start_worker(cluster.config_path, node, Path(tmp) / f"{node}.log"))
            wait_workers(config, ("spark1", "spark2"))
            llm, tts = host["gemma"].sim.stats, host["orpheus"].sim.stats
            sims = Sims(llm, tts, Timeline.watch(llm), Timeline.watch(tts))
            urls = {name: f"http://127.0.0.1:{cluster.ports[name]}" for name in SIMULATED}
            sessions = shared_sessions(config.database)
            for number in range(args.rounds + 1):  # round 0 warms every path, not counted
                counted = number > 0
                sides = ["direct", "streamed", "batch"]
                if number % 2 == 0:
                    sides.reverse()
                for side in sides:
                    if side == "direct":
                        seen.first_pieces.add(
                            direct_round(urls, args.max_tokens, sims, figures, counted)
                        )
                    else:
                        streamed = side == "streamed"
                        outcome = pipeline_round(config, sessions, streamed, args.max_tokens,
                                                 sims, figures, counted)  # fmt: skip
                        (seen.streamed if streamed else seen.batch).append(outcome)
                if counted:
                    lists = figures.lists
                    print(
                        f"round {number} ({', '.join(sides)}): first audio streamed "
                        f"{lists[FIRST][-1]:.0f} ms, direct {lists[DIRECT][-1]:.0f} ms; whole "
                        f"run streamed {lists[WHOLE][-1]:.0f} ms, batch {lists[BATCH][-1]:.0f} ms",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--tokens-per-s", type=float, default=52.0,
                        help="the LLM's speed: [sim.gemma] tokens_per_s")  # fmt: skip
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    figures, seen = Figures(), Seen()
    run(args, figures, seen)
    from sparkjobs.execution.cutter import cut_pieces

    print(f"started {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"rounds: {args.rounds} (after one warm-up round), time scale {args.time_scale:g}, "
          f"LLM {args.tokens_per_s:g} tokens/s, max_tokens {args.max_tokens}")  # fmt: skip
    streamed, batch = seen.streamed[-1], seen.batch[-1]
    print(f"reply: {len(' '.join(streamed.pieces))} characters; pieces streamed "
          f"{[len(p) for p in streamed.pieces]}, batch {[len(p) for p in batch.pieces]}; "
          f"speech heard {streamed.audio_s:.1f} s / {batch.audio_s:.1f} s")  # fmt: skip
    if len(seen.first_pieces) != 1 or streamed.pieces[0] not in seen.first_pieces:
        print(f"NOTE: the direct first piece(s) {sorted(seen.first_pieces)!r} differ from the "
              f"pipeline's {streamed.pieces[0]!r}")  # fmt: skip
    alike = all(o.pieces == streamed.pieces for o in seen.streamed)
    if not alike or streamed.pieces != cut_pieces(" ".join(streamed.pieces)):
        print("NOTE: the streamed runs' pieces differ between rounds or from cut_pieces")
    for name in figures.lists:
        print(f"  {figures.line(name)}")
    best = (
        (figures.median(DIRECT_LLM) + figures.median("streamed: Orpheus busy"))
        / (figures.median(DIRECT_WHOLE) + figures.median("batch (stream=False): Orpheus busy"))
    )  # fmt: skip
    print(f"best whole-run ratio the simulators' own times allow (LLM to its first sentence "
          f"+ Orpheus busy) / (LLM's whole reply + Orpheus busy): {best:.2f}")  # fmt: skip
    print(f"first audio ratio (pipeline / direct): "
          f"{figures.median(FIRST) / figures.median(DIRECT):.2f}")  # fmt: skip
    whole = figures.median(WHOLE) / figures.median(BATCH)
    print(f"whole run ratio (streamed / batch): {whole:.2f}")


if __name__ == "__main__":
    main()
