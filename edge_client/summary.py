"""What an edge device reports: its upload summary and its evaluation, as frozen records.

`runner.train_and_upload` returns an `UploadSummary`, `runner.evaluate_with_server` an
`EvaluationSummary`; the fleet reads their fields and carries them in its Flower replies as JSON
(`to_json` / `from_json`, checked field by field on the way in). Their plain form is the device's
`summary.json` and the per-client rows of a fleet's report.json, so its keys are kept as they were:
the bytes accounting (`WireReport`) is written beside the other keys, not nested.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.records import Record, flatten, omit_none


@dataclass(frozen=True)
class WireReport(Record):
    """Bytes accounting of one upload (`edge_client.codec.wire_report`): payload (latents + int32
    labels) against raw 8-bit images + labels, and with protobuf framing when measured."""

    WHAT = "wire report"

    rows: int
    latent_dim: int
    bits: int
    pixels: int
    payload_bytes: int
    bytes_per_sample: float
    raw_bytes: int
    compression_pixels: float        # pixels / latent_dim (the paper's ratio)
    compression_bytes: float         # raw bytes / payload bytes
    wire_bytes: int | None = omit_none()          # with framing, when the upload measured it
    compression_wire: float | None = omit_none()  # raw bytes / wire bytes


@dataclass(frozen=True)
class UploadRecord(Record):
    """One committed upload as the server acknowledged it."""

    WHAT = "upload"

    upload_id: str
    rows: int
    rows_stored: int
    duplicate: bool
    attempts: int
    chunks: int
    retry_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timings(Record):
    """Wall seconds of each step of `train_and_upload`."""

    WHAT = "timings"

    data_s: float
    register_s: float
    train_s: float
    encode_s: float
    upload_s: float
    total_s: float


@dataclass(frozen=True)
class DefenseReport(Record):
    """The edge defense a device applied to its released rows (docs/privacy.md): the settings,
    epsilon per released row (None without noise) and the training objective's weights."""

    WHAT = "defense"

    noise_multiplier: float
    clip_norm: float
    noise_std: float
    epsilon: float | None
    delta: float
    neighbouring: str
    clipped_share: float            # share of training rows whose norm exceeded clip_norm
    row_norm_median: float
    nopeek_weight: float
    label_weight: float
    prototype_weight: float = 0.0   # absent from summaries written before the prototype objective


@dataclass(frozen=True)
class UploadSummary(Record):
    """What one device trained, uploaded and measured (`train_and_upload`); also its summary.json."""

    WHAT = "upload summary"

    client_id: str
    server: str
    dataset: str
    partition: str                   # "<partition id>/<number of partitions>"
    alpha: float | None
    autoencoder: str
    analog: bool
    n_train: int
    n_test: int
    labels: tuple[int, ...]          # training samples per class
    wire: WireReport = flatten()
    per_feature_scale: bool
    scale: tuple[float, ...]
    quantization_rmse_rel: float
    recon_mse_initial: float
    recon_mse: float
    train_loss: tuple[float, ...]
    uploads: tuple[UploadRecord, ...]
    rows_stored: int
    anchor_rows: int
    anchor_wire_bytes: int           # included in wire.wire_bytes
    init_bytes_down: int             # pretrained weights received, float32 bytes (0 with a seeded init)
    client_total_rows: int
    attempts: int
    timings: Timings
    state_dir: str
    events: dict[str, Any]           # simulated events per tile and phase (docs/energy.md)
    defense: DefenseReport | None = omit_none()


@dataclass(frozen=True)
class EvaluationSummary(Record):
    """A device's held-out accuracy as the server's classifier scored its encoded test split
    (`evaluate_with_server`); without a test split, accuracy is NaN and the per-class figures absent."""

    WHAT = "evaluation"

    client_id: str
    n_test: int
    correct: int
    accuracy: float
    per_class_accuracy: dict[int, float] | None = omit_none()
    classify_s: float | None = omit_none()
