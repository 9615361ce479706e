"""The fleet's run-time error: a phase failed (a client, a node layout, a service)."""
from __future__ import annotations

from common.errors import AnalogEdgeError


class FleetError(AnalogEdgeError, RuntimeError):
    """A phase of the fleet run failed; the message names the client(s) and the reason."""
