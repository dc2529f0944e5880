"""Model-server-aware dispatch: who may call a server now, and why others wait.

`leases` holds the cluster-wide in-flight limits in Redis, `probe` probes a server by
its kind (and compares its models with the config), `health` publishes the readings,
`backpressure` reads the servers' own load, `gate` combines the three
into one answer, `standing` is what admission reads of a step, `admission` holds a
task's ticket and lease, `waits` records why a step waits
(`wait_reason(step)` for `show` and the run page), `monitor` is the worker's probe thread,
`status` is the published health every other surface shows, `places` says where waiting
work stands in line and when it may start, and `retry` says when a step is tried again.
"""

from __future__ import annotations

from sparkjobs.dispatch.waits import wait_reason

__all__ = ["wait_reason"]
