"""`sparkjobs submit`: speak, clone, chat or a named job now, optionally waiting for it.

Every input is checked before anything is written or queued (exit 2), then the
broker and the database (exit 3); only then is the run written and published.
Without --wait the run id is printed as soon as both are done.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sparkjobs.cli.follow import AsJson, Out, Play, Stream
from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    from sparkjobs.config import Config
    from sparkjobs.jobs.define import Job

Text = Annotated[
    str | None,
    typer.Argument(help="The text; `-` reads it from stdin.", show_default=False),
]
TextFile = Annotated[
    Path | None, typer.Option("--file", "-f", help="Read the text from FILE.", show_default=False)
]
Service = Annotated[
    str | None, typer.Option("--service", "-s", help="Default: the first of the right kind.")
]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Wait for the run, then deliver it.")]


def register(app: typer.Typer) -> None:
    """Add the `submit` sub-app (speak, clone, chat, job) to the main app."""
    submit = typer.Typer(help="Submit work now: speech, a cloned voice, a chat, a job.",
                         no_args_is_help=True)  # fmt: skip
    submit.command("speak")(speak)
    submit.command("clone")(clone)
    submit.command("chat")(chat)
    submit.command("job")(job)
    app.add_typer(submit, name="submit")


def speak(
    text: Text = None,
    file: TextFile = None,
    voice: Annotated[str | None, typer.Option("--voice", "-v", help="Default: the first.")] = None,
    service: Service = None,
    wait: Wait = False,
    out: Out = None,
    stream: Stream = False,
    play: Play = False,
    as_json: AsJson = False,
) -> None:
    """Read TEXT aloud on a TTS service (long text is split, synthesized and joined);
    with --stream, --out - or --play the audio comes as each piece is made."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.follow import check_stream
    from sparkjobs.runs.adhoc import speak_job

    config = get_config()
    words = read_text(text, file)
    audio = check_stream(stream, out, as_json, play)
    _check_waiting(wait or audio, out)
    built = speak_job(config, words, voice=voice, service=service)
    _submit(config, built, wait or audio, out, as_json, stream_audio=audio)


def clone(
    text: Text = None,
    ref_audio: Annotated[
        Path | None,
        typer.Option("--ref-audio", help="The reference voice (WAV).", show_default=False),
    ] = None,
    ref_text: Annotated[
        str | None, typer.Option("--ref-text", help="What the reference says.")
    ] = None,
    file: TextFile = None,
    service: Service = None,
    wait: Wait = False,
    out: Out = None,
    stream: Stream = False,
    play: Play = False,
    as_json: AsJson = False,
) -> None:
    """Speak TEXT in the voice of a reference recording (stored on the TTS node first)."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.follow import check_infrastructure, check_stream
    from sparkjobs.runs.adhoc import check_reference, clone_job, put_reference

    config = get_config()
    words = read_text(text, file)
    if ref_audio is None:
        raise BadInput("submit clone needs --ref-audio REF.wav, a recording of the voice")
    audio = check_stream(stream, out, as_json, play)
    wait = wait or audio
    _check_waiting(wait, out)
    check_reference(ref_audio)
    placeholder = "0" * 64  # the job is checked before the reference is stored
    clone_job(config, words, ref_audio=placeholder, ref_text=ref_text, service=service)
    check_infrastructure(config)
    sha256 = put_reference(config, ref_audio, service=service)
    job = clone_job(config, words, ref_audio=sha256, ref_text=ref_text, service=service)
    _submit(config, job, wait, out, as_json, stream_audio=audio, checked=True)


def chat(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; `-` reads it from stdin.", show_default=False)
    ] = None,
    file: TextFile = None,
    service: Service = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Default: the service's first.")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1)] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the reply as it arrives (implies --wait).")
    ] = False,
    wait: Wait = False,
    out: Out = None,
    as_json: AsJson = False,
) -> None:
    """Ask an LLM service PROMPT; with --wait (or --stream) print the reply."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.runs.adhoc import chat_job

    config = get_config()
    words = read_text(prompt, file, what="prompt")
    if stream and as_json:
        raise BadInput("--stream prints the reply as text; leave out --json (or --stream)")
    _check_waiting(wait or stream, out)
    built = chat_job(
        config, words, service=service, model=model, system=system, max_tokens=max_tokens,
        stream_tokens=stream,
    )  # fmt: skip
    _submit(config, built, wait or stream, out, as_json, stream=stream)


def job(
    name: Annotated[str, typer.Argument(help="The job to run now.", show_default=False)],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Override a parameter: k=v.")
    ] = None,
    wait: Wait = False,
    out: Out = None,
    as_json: AsJson = False,
) -> None:
    """Run the job NAME now, as `sparkjobs jobs run` does (its overlap policy applies)."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.follow import check_infrastructure, submitted_json, wait_and_deliver
    from sparkjobs.cli.jobs import _find, _parse_params, _record_manual_skip
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.jobs.slots import overlap_skip_reason
    from sparkjobs.runs.params import run_params
    from sparkjobs.runs.submit import active_run_exists, submit_job

    config = get_config()
    found = _find(config, name)
    params = _parse_params(param or [])
    run_params(found, params)
    _check_waiting(wait, out)
    check_infrastructure(config)
    reason = overlap_skip_reason(found, active_run_exists(config, found.name))
    if reason is not None:
        run_id = _record_manual_skip(config, found, params, reason)
        if as_json:
            print_json({"run_id": str(run_id), "job": name, "status": "skipped", "error": reason})
        else:
            console.print(f"skipped {name} (run {run_id}): {reason}", markup=False)
        raise typer.Exit(1)
    submitted = submit_job(config, found, params=params, trigger="manual", interactive=wait)
    if wait:
        wait_and_deliver(config, submitted.run_id, out=out, as_json=as_json)
    elif as_json:
        print_json(submitted_json(submitted.run_id, name))
    else:
        console.print(str(submitted.run_id), markup=False)


def read_text(text: str | None, file: Path | None, *, what: str = "text") -> str:
    """The text from the argument, from stdin (`-`) or from --file; exactly one of them."""
    if file is not None and text is not None:
        raise BadInput(f"give the {what} as an argument or with --file, not both")
    if file is not None:
        try:
            return file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read --file {file}: {exc}; name a readable text file") from exc
    if text == "-":
        return sys.stdin.read()
    if text is None:
        raise BadInput(f"no {what}: give it as an argument, `-` for stdin, or --file FILE")
    return text


def _check_waiting(wait: bool, out: Path | None) -> None:
    from sparkjobs.cli.follow import check_out

    if out is not None and not wait:
        raise BadInput("--out needs --wait: the output exists only once the run has finished")
    check_out(out)


def _submit(
    config: Config,
    built: Job,
    wait: bool,
    out: Path | None,
    as_json: bool,
    *,
    stream: bool = False,
    stream_audio: bool = False,
    checked: bool = False,
) -> None:
    """Submit `built` (trigger `submit`); print its id, or wait and deliver it."""
    from sparkjobs.cli.follow import (
        check_infrastructure,
        stream_and_deliver,
        submitted_json,
        wait_and_deliver,
    )
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.runs.submit import submit_job

    if not checked:
        check_infrastructure(config)
    # Someone waiting at a terminal goes first (queue and lease priority).
    submitted = submit_job(config, built, trigger="submit", interactive=wait)
    step = built.steps[0]
    if not wait:
        if as_json:
            print_json(submitted_json(submitted.run_id, built.name, kind=step.kind))
        else:
            console.print(str(submitted.run_id), markup=False)
        return
    if stream_audio:  # to --out, stdout, or with no --out (--play) a player
        stream_and_deliver(config, submitted.run_id, out=out, as_json=as_json)
        return
    if stream:
        _stream(config, submitted.run_id)
    wait_and_deliver(config, submitted.run_id, out=out, as_json=as_json, quiet_text=stream)


def _stream(config: Config, run_id: object) -> None:
    """Print a chat's reply as the worker publishes it; Ctrl-C leaves the run going."""
    import uuid

    from sparkjobs.broker.tokens import follow_tokens
    from sparkjobs.cli.follow import interrupted, saying_waits
    from sparkjobs.runs.info import follow_run

    assert isinstance(run_id, uuid.UUID)

    def over() -> bool:
        return follow_run(config, run_id, timeout_s=0).status.terminal

    try:
        with saying_waits(config, run_id):
            for piece in follow_tokens(config, run_id, finished=over):
                sys.stdout.write(piece)
                sys.stdout.flush()
        sys.stdout.write("\n")
    except KeyboardInterrupt:
        interrupted(run_id)
        raise typer.Exit(130) from None
