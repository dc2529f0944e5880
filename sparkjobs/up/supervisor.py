"""Starting, watching and stopping the child processes of `sparkjobs up`.

Children run in their own sessions, so a Ctrl-C reaches only `up`, which then
stops them in order: everything but the broker first (workers hand unfinished
messages back to it), the broker last. Each child also gets SIGTERM from the
kernel if `up` itself dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import IO

from sparkjobs.errors import SparkjobsError
from sparkjobs.up.component import Component, Stage

READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 7.5  # everything but the broker
BROKER_GRACE_S = 1.5  # so the whole stop stays within 10 s

_PR_SET_PDEATHSIG = 1


class ComponentFailed(SparkjobsError):
    """A child exited or never became ready; the message quotes its log."""


def _die_with_parent() -> None:
    # Linux: deliver SIGTERM to this child when the process that started it dies.
    # Not Linux (no prctl): `up`'s own stop path still applies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Running:
    component: Component
    process: subprocess.Popen[bytes]
    log: Path


class Supervisor:
    """Runs components stage by stage and stops them all together."""

    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str],
        on_ready: Callable[[Running], None] = lambda running: None,
    ) -> None:
        self.log_dir = log_dir
        self.env = env
        self.on_ready = on_ready
        self.running: list[Running] = []

    def start(self, components: list[Component], should_stop: Callable[[], bool]) -> None:
        """Start every stage and wait until it is ready (or raise ComponentFailed)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for _, stage in groupby(components, key=lambda component: component.stage):
            started = [self._spawn(component) for component in stage]
            for running in started:
                self._await_ready(running, should_stop)
                self.on_ready(running)

    def _spawn(self, component: Component) -> Running:
        log = self.log_dir / f"{component.name.replace(' ', '-')}.log"
        handle: IO[bytes] = log.open("ab")
        process = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**self.env, **component.env},
            start_new_session=True,
            # Spawned from the main thread before any other thread starts.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        handle.close()
        running = Running(component, process, log)
        self.running.append(running)
        return running

    def _await_ready(self, running: Running, should_stop: Callable[[], bool]) -> None:
        component, process = running.component, running.process
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not should_stop():
            code = process.poll()
            if component.oneshot and code == 0:
                self.running.remove(running)
                return
            if code is not None:
                raise ComponentFailed(
                    f"{component.name} exited with code {code}; its log ({running.log}) "
                    f"ends with:\n{tail(running.log)}"
                )
            if not component.oneshot and (component.ready is None or component.ready()):
                return
            time.sleep(0.2)
        if not should_stop():
            raise ComponentFailed(
                f"{component.name} was not ready after {READY_TIMEOUT_S:g} s; its log "
                f"({running.log}) ends with:\n{tail(running.log)}"
            )

    def first_exited(self) -> Running | None:
        """A long-running child that has exited on its own, if any."""
        return next((r for r in self.running if r.process.poll() is not None), None)

    def stop(self) -> None:
        """Stop every child; the broker last. Returns within about 10 s."""
        broker = [r for r in self.running if r.component.stage == Stage.BROKER]
        others = [r for r in self.running if r.component.stage != Stage.BROKER]
        _terminate(others, STOP_GRACE_S)
        _terminate(broker, BROKER_GRACE_S)
        self.running.clear()


def _terminate(children: list[Running], grace_s: float) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log file, indented for quoting in an error."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text) or "    (empty log)"


def child_env(config_file: Path | None) -> dict[str, str]:
    """The environment of every child: ours, plus the config file made absolute."""
    env = dict(os.environ)
    if config_file is not None:
        env["SPARKJOBS_CONFIG"] = str(config_file.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
