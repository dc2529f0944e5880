"""What every handler of the run page and API reads: the config, the store, and the
last health of every service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
    from starlette.templating import Jinja2Templates

    from sparkjobs.config import Config
    from sparkjobs.dispatch.probe import ServiceHealth
    from sparkjobs.web.views import Links

HEALTH_TTL_S = 10.0

Prober = Callable[["Config"], "list[ServiceHealth]"]


def default_prober(config: Config) -> list[ServiceHealth]:
    from sparkjobs.dispatch.probe import probe_services

    return probe_services(config)


@dataclass
class HealthCache:
    """The last probe of every service, refreshed at most every HEALTH_TTL_S."""

    config: Config
    prober: Prober
    _last: list[ServiceHealth] = field(default_factory=list)
    _at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> list[ServiceHealth]:
        with self._lock:
            if time.monotonic() - self._at > HEALTH_TTL_S:
                self._last = self.prober(self.config)
                self._at = time.monotonic()
            return self._last


@dataclass
class WebState:
    """What every handler reads: the config, the store and the helpers built from them."""

    config: Config
    sessions: sessionmaker[Session]
    templates: Jinja2Templates
    links: Links
    health: HealthCache
