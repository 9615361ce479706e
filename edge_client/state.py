"""What a trained client keeps beside its encoder (`state.json`), read and written in one place.

Enough to encode the client's held-out split exactly like its uploads later: who it is, which
partition of which split it holds, its seed, and how its latents were quantized (bits, scale),
plus the EdgeConfig it trained with (never tokens or secrets: `EdgeConfig.to_dict` drops them).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.validation import ConfigError

STATE_FILE = "state.json"


@dataclass(frozen=True)
class ClientState:
    """One client's state.json: identity, partition, seed, wire quantization, training config."""

    client_id: str
    partition_id: int
    num_partitions: int
    alpha: float | None
    seed: int
    latent_dim: int
    bits: int | None = None                 # None until latents were quantized for upload
    scale: list[float] | None = None        # quantization scale(s) of the upload (integer bits)
    config: dict[str, Any] = field(default_factory=dict)   # EdgeConfig.to_dict() it trained with
    image_shape: list[int] | None = None

    def save(self, state_dir: str | Path) -> Path:
        path = Path(state_dir) / STATE_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, state_dir: str | Path) -> "ClientState":
        path = Path(state_dir) / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"state_dir: {path} not found; run train_and_upload first") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> "ClientState":
        return dataclasses.replace(self, **changes)

    def check_matches(self, state_dir: str | Path, **expected: Any) -> None:
        """Raise ConfigError naming the first field whose saved value differs from `expected`."""
        for key, want in expected.items():
            if getattr(self, key) != want:
                raise ConfigError(f"{key}: got {want!r}, but {state_dir} was trained with {getattr(self, key)!r}")
