"""`sparkjobs sim`: serve the model-server simulators on their configured URLs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

# The servers the `openai` simulator plays: config.values.SimServer, not imported here
# so that the command line starts without pydantic.
Like = Literal["vllm", "llama-server", "llama-cpp-python"]


def overrides_from(**options: Any) -> dict[str, Any]:
    """The SimProfile fields given on the command line (those left unset are omitted)."""
    return {key: value for key, value in options.items() if value is not None}


def register(app: typer.Typer) -> None:
    """Add the `sim` command to `app`."""

    @app.command("sim")
    def sim(
        service: Annotated[
            list[str] | None,
            typer.Option(
                "--service", "-s", help="a service to simulate (repeatable; default: all)"
            ),
        ] = None,
        time_scale: Annotated[
            float | None, typer.Option(help="divide every simulated duration by this", min=0.001)
        ] = None,
        seed: Annotated[int | None, typer.Option(help="seed of the generated text")] = None,
        error_rate: Annotated[
            float | None, typer.Option(help="share of requests answered 500 at once", min=0, max=1)
        ] = None,
        hang_rate: Annotated[
            float | None, typer.Option(help="share of requests never answered", min=0, max=1)
        ] = None,
        midstream_error_rate: Annotated[
            float | None, typer.Option(help="share of streams that fail half way", min=0, max=1)
        ] = None,
        slow_factor: Annotated[
            float | None, typer.Option(help="multiply every duration by this", min=0.001)
        ] = None,
        loading_s: Annotated[
            float | None,
            typer.Option(help="refuse connections this long, as a server loading its model", min=0),
        ] = None,
        refuse: Annotated[
            bool | None, typer.Option("--refuse", help="refuse every connection")
        ] = None,
        empty_wav: Annotated[
            bool | None, typer.Option("--empty-wav", help="TTS: answer 200 with an empty WAV")
        ] = None,
        backend_down: Annotated[
            bool | None,
            typer.Option("--backend-down", help="Orpheus: do not serve its completions backend"),
        ] = None,
        no_backend: Annotated[
            bool, typer.Option("--no-backend", help="Orpheus: a real backend runs at backend_url")
        ] = False,
        like: Annotated[
            Like | None,
            typer.Option(
                help="openai: the server to play (llama-cpp-python: no /health, no usage chunk)"
            ),
        ] = None,
    ) -> None:
        """Serve simulated model servers (vLLM, Ollama, Orpheus, Qwen clone) until stopped."""
        import asyncio
        import logging

        from sparkjobs.cli.context import get_config
        from sparkjobs.sim import SimHost, serve_until_stopped

        config = get_config()
        overrides = overrides_from(
            time_scale=time_scale, seed=seed, error_rate=error_rate, hang_rate=hang_rate,
            midstream_error_rate=midstream_error_rate, slow_factor=slow_factor,
            loading_s=loading_s, refuse=refuse, empty_wav=empty_wav, backend_down=backend_down,
            like=like,
        )  # fmt: skip
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        host = SimHost(config, service or (), overrides, with_backend=not no_backend)
        asyncio.run(serve_until_stopped(host, typer.echo))
