"""`sparkjobs sim` as a process: it names its simulators, serves, and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.services import free_port

pytestmark = pytest.mark.e2e


def test_sim_serves_the_named_service_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "sparkjobs.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[nodes.n1]\nbond_address = "127.0.0.1"\n'
        f'[services.gemma]\nnode = "n1"\nkind = "openai"\nurl = "http://127.0.0.1:{port}"\n'
        'models = ["gemma-4-26b-a4b"]\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sparkjobs", "--config", str(config), "sim",
         "--service", "gemma", "--time-scale", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket is listening
        assert line.startswith(f"simulator gemma: vLLM at http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
