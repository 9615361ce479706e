"""The records the latent pipeline's Flower messages carry, as frozen dataclasses with a JSON form.

The ServerApp sends a `LatentTask`; a device replies with a `ClientUpload` (to `train.latent`) or
a `ClientEvaluation` (to `evaluate.latent`). Each travels as JSON inside a ConfigRecord
(fleet/run/transport.py) and is checked field by field when read, so a garbled message fails with
one line naming the field. Their plain form is also the per-client rows of report.json, whose keys
are kept as they were (the device's summary keys, then the fleet's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.errors import ContractError
from common.records import Record, flatten, read_value
from edge_client.summary import DefenseReport, EvaluationSummary, UploadSummary, WireReport


@dataclass(frozen=True)
class LatentTask(Record):
    """What the latent tasks tell every device: the fleet config (its plain form), the latent
    service's address and TLS root certificate (PEM text: a device reads no file of the server's),
    the SHA-256 of the public anchor set, and, for simulated clients only, the folder under which
    they keep state (real devices name theirs in their node config)."""

    WHAT = "task"

    fleet: dict[str, Any]
    server_address: str
    state_root: str | None = None
    latent_ca_pem: str | None = None
    anchor_sha256: str | None = None


@dataclass(frozen=True)
class ClientUpload(Record):
    """A device's reply to `train.latent`: its upload summary and what the fleet adds (its partition,
    wall time, and the bytes its pretrained weights crossed the wire as)."""

    WHAT = "train reply"

    summary: UploadSummary
    partition_id: int
    num_partitions: int
    wall_s: float
    init_wire_bytes: int = 0      # the train message's pretrained weights as sent (0 without them)

    @property
    def client_id(self) -> str:
        return self.summary.client_id

    @property
    def wire(self) -> WireReport:
        return self.summary.wire

    @property
    def anchor_wire_bytes(self) -> int:
        return self.summary.anchor_wire_bytes

    @property
    def recon_mse(self) -> float | None:
        return self.summary.recon_mse

    @property
    def defense(self) -> DefenseReport | None:
        return self.summary.defense

    def to_dict(self) -> dict[str, Any]:
        """The summary's keys, then the fleet's; `init_bytes_down` is what crossed the wire and
        `init_weights_bytes` the float32 payload (the summary's own `init_bytes_down`)."""
        out = self.summary.to_dict()
        out.update(partition_id=self.partition_id, num_partitions=self.num_partitions, client_id=self.client_id,
                   wall_s=self.wall_s, init_weights_bytes=self.summary.init_bytes_down,
                   init_bytes_down=self.init_wire_bytes)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> "ClientUpload":
        where = where or cls.WHAT
        if not isinstance(data, dict):
            raise ContractError(f"{where}: got {type(data).__name__}, must be a JSON object")
        extra = {}
        for key, tp in (("partition_id", int), ("num_partitions", int), ("wall_s", float),
                        ("init_weights_bytes", int), ("init_bytes_down", int)):
            if key not in data:
                raise ContractError(f"{where}.{key}: missing")
            extra[key] = read_value(f"{where}.{key}", data[key], tp)
        summary = UploadSummary.from_dict({**data, "init_bytes_down": extra["init_weights_bytes"]}, where)
        return cls(summary, extra["partition_id"], extra["num_partitions"], extra["wall_s"],
                   extra["init_bytes_down"])


@dataclass(frozen=True)
class RequantizedUpload(Record):
    """A trained encoder's latents re-quantized at another bit width and uploaded again
    (`client_tasks.requantize_upload`, the sweep and the alignment comparison)."""

    WHAT = "requantized upload"

    wire: WireReport = flatten()
    client_id: str
    anchor_wire_bytes: int
    partition_id: int
    recon_mse: float | None            # of the encoder trained at the first bit width
    n_train: int
    n_test: int

    init_wire_bytes = 0                # no pretrained weights are sent again
    defense = None                     # the defense report is the first bit width's


@dataclass(frozen=True)
class ClientEvaluation(Record):
    """A device's reply to `evaluate.latent`: its evaluation, its partition and wall time."""

    WHAT = "evaluate reply"

    evaluation: EvaluationSummary = flatten()
    partition_id: int
    wall_s: float

    @property
    def client_id(self) -> str:
        return self.evaluation.client_id


__all__ = ["ClientEvaluation", "ClientUpload", "LatentTask", "RequantizedUpload"]
