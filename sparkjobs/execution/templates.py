"""Rendering step templates: `str.format` over the slot, parameters and earlier outputs.

A template sees `slot` (an aware datetime in the job's time zone), `params` (the run's
parameters, by attribute or by key), `previous` (the previous step's output as text)
and `outputs` (every earlier step's output, by index). Values are inserted as they
are, never parsed again, so an LLM's braces cannot inject a field.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sparkjobs.errors import BadInput


class TemplateError(BadInput):
    """A template names a field or parameter that does not exist, or is malformed."""


class Params(Mapping[str, Any]):
    """The run's parameters, readable as `params.city` and as `params[city]`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class TemplateContext:
    """What a template may refer to."""

    slot: datetime
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: Sequence[str] = ()

    @property
    def previous(self) -> str:
        return self.outputs[-1] if self.outputs else ""


def output_text(text: str | None, data: Mapping[str, Any] | None) -> str:
    """A step's output as a template sees it: its text, else its data as JSON."""
    if text is not None:
        return text
    if data is not None:
        return json.dumps(data, ensure_ascii=False, sort_keys=True)
    return ""


def render(template: str, context: TemplateContext, *, where: str = "template") -> str:
    """Fill `template` from `context`.

    Args:
        template: a `str.format` template, e.g. "Weather in {params.city} on {slot:%A}".
        context: the slot, parameters and earlier outputs.
        where: names the template in errors (e.g. "schedules/briefing.py:12").

    Raises:
        TemplateError: an unknown field or parameter, or a malformed template; the
            message lists what the template can use.
    """
    fields = {
        "slot": context.slot,
        "params": Params(context.params),
        "previous": context.previous,
        "outputs": list(context.outputs),
    }
    try:
        return string.Formatter().vformat(template, (), fields)
    except KeyError as exc:
        raise TemplateError(
            f"{where}: unknown field {{{exc.args[0]}}}; a template can use {{slot}}, "
            "{params.NAME}, {previous} and {outputs[N]} (write {{ and }} for braces)"
        ) from exc
    except AttributeError as exc:
        known = ", ".join(sorted(context.params)) or "none"
        raise TemplateError(
            f"{where}: unknown parameter {exc.args[0]!r} in {{params.{exc.args[0]}}}; "
            f"known parameters: {known}"
        ) from exc
    except IndexError as exc:
        raise TemplateError(
            f"{where}: {{outputs[N]}} names a step that has not run; "
            f"{len(context.outputs)} earlier output(s) exist (indexes from 0)"
        ) from exc
    except ValueError as exc:
        raise TemplateError(
            f"{where}: malformed template ({exc}); write {{{{ and }}}} for literal braces"
        ) from exc
