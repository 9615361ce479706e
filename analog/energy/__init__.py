"""Energy and latency of a simulated run: event counters (counters.py) and a cited per-event model
(model.py), see docs/energy.md."""
from analog.energy.counters import EventCounter, active, counting, totals

__all__ = ["EventCounter", "active", "counting", "totals"]
