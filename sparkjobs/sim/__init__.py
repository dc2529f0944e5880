"""Simulators of the model servers (vLLM, Ollama, Orpheus, Qwen clone) for tests and demos.

They speak the real protocols, quirks included, with speeds from `[sim.<service>]`
profiles; see docs/simulators.md.
"""

from sparkjobs.sim.host import Served, SimHost, profile_of, serve_until_stopped

__all__ = ["Served", "SimHost", "profile_of", "serve_until_stopped"]
