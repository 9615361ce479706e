"""Why a store cannot be trained on, or a client cannot be served (torch-free: the service maps these
onto gRPC status codes without loading torch)."""
from __future__ import annotations

from common.errors import AnalogEdgeError


class TrainingError(AnalogEdgeError, RuntimeError):
    """The store cannot train a classifier (too few rows, one class, mixed latent dims)."""


class UnknownClient(TrainingError):
    """An adapter classifier was asked about a client it has no per-client head for."""
