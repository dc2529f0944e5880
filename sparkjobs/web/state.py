"""What every handler of the run page and API reads: the config, the store, the
services' published health and where waiting work stands in the lines.

Health is what the workers publish (`sparkjobs.dispatch.status`), read from Redis at
each request: the page never probes a server itself, so it says what dispatch obeys.
Both sources are functions of the config, so that tests can give their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
    from starlette.templating import Jinja2Templates

    from sparkjobs.config import Config
    from sparkjobs.dispatch.places import StepPlace
    from sparkjobs.dispatch.status import ServiceStatus
    from sparkjobs.store.models import Run
    from sparkjobs.web.views import Links

Readings = Callable[["Config"], "list[ServiceStatus]"]
Places = Callable[["Config", "Session", "Run"], "dict[int, StepPlace]"]


def published_readings(config: Config) -> list[ServiceStatus]:
    """Every service's status as its node's worker published it, with its line."""
    from sparkjobs.dispatch.status import read_statuses

    return read_statuses(config)


def line_places(config: Config, session: Session, run: Run) -> dict[int, StepPlace]:
    """Where the run's waiting steps stand in their services' lines."""
    from sparkjobs.runs.info import line_places as places

    return places(config, session, run)


@dataclass
class WebState:
    """What every handler reads: the config, the store and the helpers built from them."""

    config: Config
    sessions: sessionmaker[Session]
    templates: Jinja2Templates
    links: Links
    readings: Readings = published_readings
    places: Places = line_places

    def health(self) -> list[ServiceStatus]:
        """Every service's published status now, in config order."""
        return self.readings(self.config)
