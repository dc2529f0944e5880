"""What `sparkjobs up` runs: one child process, where it runs, and how to know it is ready."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class Stage(IntEnum):
    """Start order: each stage is started and ready before the next one starts."""

    BROKER = 10
    SIMULATORS = 20
    PREPARE = 30  # one-shot steps such as database migrations
    WORKERS = 40
    SCHEDULER = 50
    WATCH = 60  # Flower, the run page


@dataclass(frozen=True)
class Component:
    """One child process of `up`.

    Attributes:
        name: short and unique, e.g. "worker spark1", "sim gemma".
        argv: the command; `up` runs it with its own environment plus `env`.
        where: what a person reads in the summary, e.g. "queue spark1, 36 threads".
        stage: when it starts.
        ready: a probe that returns True once the component serves; None means
            "ready as soon as it runs".
        oneshot: runs to completion (exit 0) before the next stage starts.
        simulated: named as a simulator in every summary and log line.
    """

    name: str
    argv: tuple[str, ...]
    where: str
    stage: Stage
    ready: Callable[[], bool] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    oneshot: bool = False
    simulated: bool = False
