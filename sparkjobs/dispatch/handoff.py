"""Publishing a unit of work once it may run: at once when a slot is reserved for it,
or later, by whoever frees a slot and hands it on (`sparkjobs.dispatch.leases`).

A unit whose service is full waits in the service's line instead of as a message: it
holds no worker thread and no prefetched message, and it is no task event until it
runs. Only the step kinds that call a model server (and speech pieces) pass the line;
everything else is published at once.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sparkjobs.broker.client import key
from sparkjobs.broker.publish import (
    PIECE_TASK,
    STEP_TASK,
    publish_join,
    publish_piece,
    publish_step,
)
from sparkjobs.broker.units import Unit
from sparkjobs.dispatch.gate import Gate, Seat
from sparkjobs.dispatch.waits import in_line

if TYPE_CHECKING:
    from celery import Celery

    from sparkjobs.config import Config
    from sparkjobs.dispatch.leases import Handed

log = logging.getLogger(__name__)


def publish_unit(
    app: Celery, unit: Unit, service: str, *, interactive: bool | None, reserved: bool = False,
    **label: Any,
) -> None:  # fmt: skip
    """Publish `unit`'s message on its service's node (`label`: job, steps, kind);
    `reserved`: a slot of the service is reserved for it, and the message says so."""
    mark = unit.key if reserved else None
    if unit.task == STEP_TASK:
        publish_step(app, unit.run_id, unit.index, service, interactive=interactive,
                     reserved=mark, **label)  # fmt: skip
    elif unit.task == PIECE_TASK and unit.piece is not None:
        label.pop("kind", None)
        publish_piece(app, unit.run_id, unit.index, unit.piece, service,
                      interactive=interactive, reserved=mark, **label)  # fmt: skip
    else:
        label.pop("kind", None)
        publish_join(app, unit.run_id, unit.index, service, interactive=interactive, **label)


def send(
    app: Celery,
    gate: Gate,
    unit: Unit,
    service: str,
    *,
    interactive: bool,
    gated: bool,
    **label: Any,
) -> bool:
    """Publish `unit` if it may run now; else leave it in `service`'s line, to be
    published when a slot is handed to it. True when it was published.

    Args:
        gated: the unit calls the model server (a chat, clone or speak step, a piece of
            speech): it passes the line. Other units are published at once.
    """
    seat = gate.reserve(service, unit.key, interactive=interactive) if gated else Seat.OPEN
    if seat is Seat.IN_LINE:
        announce_waiting(gate, unit.key, service, gate.leases.place(service, unit.key))
        return False
    publish_unit(app, unit, service, interactive=interactive,
                 reserved=seat is Seat.RESERVED, **label)  # fmt: skip
    return True


def waiting_channel(config: Config) -> str:
    """The pub/sub channel on which units that join a line are announced (the live
    view of `sparkjobs up` prints them: waiting is no task event)."""
    return key(config, "line", "joined")


def announce_waiting(gate: Gate, unit: str, service: str, place: int | None) -> None:
    """Say once that `unit` waits for `service`, and its place: in the log, and on
    `waiting_channel` for whoever watches."""
    text = in_line(service, place, gate.config.services[service].in_flight_limit)
    log.info("%s: %s", unit, text)
    try:
        notice = json.dumps({"unit": unit, "service": service, "text": text})
        gate.client.publish(waiting_channel(gate.config), notice)
    except Exception:  # a notice for people: never worth failing the work for
        log.debug("could not announce that %s waits", unit, exc_info=True)


def publish_handed(app: Celery, service: str, handed: tuple[Handed, ...]) -> None:
    """Publish the units a freed slot was handed to; a unit that cannot be named is
    logged and its reservation left to expire (the reconciler finds its run)."""
    for one in handed:
        unit = Unit.parse(one.unit)
        if unit is None:
            log.warning("line of %s: %r is not a unit of work; dropped", service, one.unit)
            continue
        try:
            publish_unit(app, unit, service, interactive=one.interactive, reserved=True)
        except Exception:  # the reservation expires; the reconciler queues it again
            log.warning("could not publish %s, handed a slot of %s", one.unit, service,
                        exc_info=True)  # fmt: skip
