"""Following a run from the command line: checks before submitting, progress while
waiting, and delivering what the run produced (audio to a file, text to stdout).

Shared by `sparkjobs submit` and `sparkjobs wait`; the exit code says how the run
ended: 0 succeeded, 1 failed, cancelled or skipped, 130 interrupted while waiting.
While they wait, why the run waits goes to stderr when it starts waiting and each
time the reason changes (`saying_waits`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    import uuid

    from sparkjobs.config import Config
    from sparkjobs.runs.info import Progress
    from sparkjobs.store.models import Run

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (times in UTC).")]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Write the audio (or text) here; `-`: the audio to stdout, as it "
        "is made.", show_default=False,
    ),
]  # fmt: skip
Stream = Annotated[
    bool,
    typer.Option("--stream", help="Write the audio to --out as it is made (implies --wait)."),
]
Play = Annotated[
    bool,
    typer.Option(
        "--play", help="Play the audio as it is made, on a local player (implies --wait)."
    ),
]
# `--out -`: the audio goes to stdout as it is made (a player can read it there).
STDOUT = Path("-")
# Players that read a WAV from stdin, first found first; each argv ends with stdin.
PLAYERS = (
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "error", "-")),
    ("paplay", ()),
    ("aplay", ("-q", "-")),
)


def check_out(out: Path | None) -> None:
    """Refuse an --out path that cannot be written, before anything is submitted."""
    if out is None or out == STDOUT:
        return
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise BadInput(f"--out {out} is a directory; name a file, e.g. {out / 'out.wav'}")
    if not folder.is_dir():
        raise BadInput(f"--out {out}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise BadInput(f"--out {out} is not writable; choose another path")


def find_player() -> list[str]:
    """The argv of the first local player found that reads a WAV from stdin.

    Raises:
        BadInput: none is installed (naming what to install).
    """
    import shutil

    for name, args in PLAYERS:
        found = shutil.which(name)
        if found is not None:
            return [found, *args]
    raise BadInput(
        "--play needs a player that reads audio from stdin, and none of ffplay, paplay or "
        "aplay is installed. Fix: install one (e.g. `apt install ffmpeg`, `apt install "
        "pulseaudio-utils` or `apt install alsa-utils`), or write a file with --out FILE"
    )


def check_stream(stream: bool, out: Path | None, as_json: bool, play: bool = False) -> bool:
    """Whether the audio streams (`--stream`, `--out -` or `--play`); refuse what cannot
    work.

    Raises:
        BadInput: --stream without --out, the audio and JSON both on stdout, --play with
            --json or --out, or --play without a player.
    """
    if play:
        if as_json:
            raise BadInput("--play plays the audio; leave out --json (or --play)")
        if out is not None:
            raise BadInput("--play and --out both take the audio; choose one")
        find_player()
        return True
    if stream and out is None:
        raise BadInput(
            "--stream writes the audio as it is made: give --out FILE, or --out - for stdout"
        )
    if out == STDOUT and as_json:
        raise BadInput("--out - writes the audio to stdout; leave out --json (or write a file)")
    return stream or out == STDOUT


def stream_and_deliver(
    config: Config, run_id: uuid.UUID, *, out: Path | None, as_json: bool
) -> None:
    """Write the run's speech to `out` (or stdout, or with None a local player) piece by
    piece as it is made, then report how the run ended, as `wait_and_deliver` does.

    A file is a valid WAV at every moment (its sizes follow the PCM written); stdout
    and a player get a WAV of unknown length, which they read to its end.

    Raises:
        typer.Exit: 1 when the run did not succeed, 130 on Ctrl-C (the run goes on).
    """
    import subprocess
    import sys

    from sparkjobs.backends.audio import ProgressiveWav
    from sparkjobs.runs.info import follow_run
    from sparkjobs.runs.listen import follow_audio

    player = None
    if out is None:
        player = subprocess.Popen(find_player(), stdin=subprocess.PIPE)
        assert player.stdin is not None
        sink: Any = player.stdin
    else:
        sink = sys.stdout.buffer if out == STDOUT else out.open("wb")
    writer: ProgressiveWav | None = None
    try:
        with saying_waits(config, run_id):
            for heard in follow_audio(config, run_id):
                if writer is None:
                    writer = ProgressiveWav(sink, heard.sample_rate, heard.channels,
                                            heard.sample_width)  # fmt: skip
                writer.append(heard.pcm)
            run = follow_run(config, run_id)
    except KeyboardInterrupt:
        interrupted(run_id)
        raise typer.Exit(130) from None
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
        if player is not None:
            player.wait()
    written = None if out in (None, STDOUT) or writer is None else out
    finish(run, written=written, as_json=as_json)


def check_infrastructure(config: Config) -> None:
    """Raise Unreachable (exit 3) unless the broker and the database both answer."""
    from sparkjobs.broker.client import check_broker
    from sparkjobs.store.engine import check_reachable, make_engine

    check_broker(config)
    engine = make_engine(config.database, connect_timeout_s=2)
    try:
        check_reachable(engine)
    finally:
        engine.dispose()


def wait_and_deliver(
    config: Config, run_id: uuid.UUID, *, out: Path | None, as_json: bool, quiet_text: bool = False
) -> None:
    """Wait for the run with progress on stderr, then deliver its output.

    Args:
        quiet_text: the text was already printed (streamed); do not print it again.

    Raises:
        typer.Exit: 1 when the run did not succeed, 130 on Ctrl-C (the run goes on).
    """
    from sparkjobs.cli.output import err_console
    from sparkjobs.runs.info import follow_run

    def show(progress: Progress) -> None:
        if not as_json:
            err_console.print(describe_progress(progress), markup=False)

    try:
        with saying_waits(config, run_id):
            run = follow_run(config, run_id, on_progress=show)
        written = deliver(config, run, out=out, as_json=as_json, quiet_text=quiet_text)
    except KeyboardInterrupt:
        interrupted(run_id)
        raise typer.Exit(130) from None
    finish(run, written=written, as_json=as_json)


@contextmanager
def saying_waits(config: Config, run_id: uuid.UUID) -> Iterator[None]:
    """While the body waits for the run, say on stderr why the run waits: when it
    starts waiting and each time the reason changes (`sparkjobs.runs.waiting`)."""
    from sparkjobs.cli.output import err_console
    from sparkjobs.runs.waiting import WaitNotes

    def say(text: str) -> None:
        err_console.print(f"waiting: {text}", markup=False)

    with WaitNotes(config, run_id, say):
        yield


def interrupted(run_id: uuid.UUID) -> None:
    from sparkjobs.cli.output import err_console

    err_console.print(
        f"interrupted: run {run_id} goes on. Follow it with `sparkjobs wait {run_id}`, "
        f"stop it with `sparkjobs cancel {run_id}`",
        markup=False,
    )


def describe_progress(progress: Progress) -> str:
    """One line for people: "queued", "running on spark2 (speak on orpheus), piece 2/5"."""
    if progress.step is None or progress.node is None:
        return progress.status.value
    line = f"{progress.status.value} on {progress.node} ({progress.kind} on {progress.service})"
    if progress.pieces_total:
        line += f", {progress.pieces_done}/{progress.pieces_total} pieces"
    return line


def deliver(
    config: Config, run: Run, *, out: Path | None, as_json: bool, quiet_text: bool = False
) -> Path | None:
    """Write a succeeded run's audio (fetched from the node holding it) or text to `out`,
    or print the text; the path written, if any."""
    from sparkjobs.cli.output import console
    from sparkjobs.runs.info import audio_of, text_of
    from sparkjobs.store.models import Status

    if run.status != Status.SUCCEEDED:
        return None
    audio = audio_of(run)
    if audio is not None and out is not None:
        from sparkjobs.artifacts.ensure import get_artifact

        get_artifact(config, audio[0], out)
        return out
    text = text_of(run)
    if text is not None and out is not None:
        out.write_text(text + "\n")
        return out
    if text is not None and not as_json and not quiet_text:
        console.print(text, markup=False, soft_wrap=True)
    return None


def finish(run: Run, *, written: Path | None, as_json: bool) -> None:
    """Report how the run ended; exit 1 unless it succeeded."""
    from sparkjobs.cli.output import err_console, print_json
    from sparkjobs.runs.info import audio_of, run_detail
    from sparkjobs.store.models import Status

    if as_json:
        print_json({**run_detail(run), "out": None if written is None else str(written)})
    elif run.status == Status.SUCCEEDED:
        audio = audio_of(run)
        seconds = f", {audio[1].audio_s:.1f} s of audio" if audio and audio[1].audio_s else ""
        where = f" -> {written}" if written else ""
        if audio and written is None:
            where = f" (artifact {audio[0]}; `--out FILE` or `sparkjobs wait {run.id} --out FILE`)"
        err_console.print(f"succeeded: run {run.id}{seconds}{where}", markup=False)
    else:
        reason = f": {run.error}" if run.error else ""
        err_console.print(f"{run.status.value}: run {run.id}{reason}", markup=False)
    if run.status != Status.SUCCEEDED:
        raise typer.Exit(1)


def submitted_json(run_id: uuid.UUID, job: str, **extra: Any) -> dict[str, Any]:
    """What `submit` prints with --json when it does not wait."""
    return {"run_id": str(run_id), "job": job, "status": "queued", **extra}
