"""Model-server-aware dispatch: who may call a server now, and why others wait.

`leases` holds the cluster-wide in-flight limits in Redis, `health` probes servers and
publishes their state, `backpressure` reads their own load, `gate` combines the three
into one answer, `admission` is what a task calls, `waits` records why a step waits
(`wait_reason(step)` for `show` and the run page), `monitor` is the worker's probe thread.
"""

from __future__ import annotations

from sparkjobs.dispatch.waits import wait_reason

__all__ = ["wait_reason"]
