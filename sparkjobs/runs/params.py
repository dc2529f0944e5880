"""A job's parameters for a run: the defaults, overridden by what a person passed, each
converted to its default's type, and unknown names refused."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    from sparkjobs.jobs.define import Job


def run_params(job: Job, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's default parameters overridden by `params`, checked.

    A string given for a parameter whose default is a number or a boolean (as
    `--param days=3` gives) is converted to that type.

    Raises:
        BadInput: an unknown parameter (the known ones are listed), a value that
            does not convert, or one that is not JSON.
    """
    merged = dict(job.params)
    known = ", ".join(sorted(job.params)) or "none"
    for name, value in (params or {}).items():
        if name not in job.params:
            raise BadInput(
                f"unknown parameter {name!r} for job {job.name!r}; known parameters: {known}"
            )
        merged[name] = _convert(job.name, name, value, job.params[name])
    try:
        json.dumps(merged, allow_nan=False)  # NaN and Infinity are not JSON, nor storable
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"parameters of job {job.name!r} must be JSON values (strings, finite numbers, "
            f"booleans, lists, objects): {exc}"
        ) from exc
    return merged


def _convert(job: str, name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        if isinstance(default, int | float):
            return type(default)(value)
    except ValueError as exc:
        raise BadInput(
            f"parameter {name!r} of job {job!r} takes a {type(default).__name__} "
            f"(default {default!r}), not {value!r}"
        ) from exc
    return value
