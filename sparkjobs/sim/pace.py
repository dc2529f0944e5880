"""Simulated time: every duration is multiplied by slow_factor and divided by time_scale."""

from __future__ import annotations

import asyncio

from sparkjobs.config.sections import SimProfile


def scaled(profile: SimProfile, seconds: float) -> float:
    """Wall seconds for `seconds` of simulated hardware time."""
    return seconds * profile.slow_factor / profile.time_scale


async def pause(profile: SimProfile, seconds: float) -> None:
    """Sleep `seconds` of simulated time."""
    await asyncio.sleep(max(0.0, scaled(profile, seconds)))
