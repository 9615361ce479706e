"""One edge device end to end: local data -> AE on (analog) tiles -> quantized latents -> upload.

The encoder and decoder are saved under `state_dir` and never leave the device; `evaluate_with_server`
later re-creates the same held-out split, encodes it with the saved encoder and asks `Classify`.
Seeds: the partition uses `cfg.seed` (shared by all clients, so partitions are disjoint); the local
split, shuffling, tile noise and device-to-device variation use a seed derived from
(cfg.seed, partition_id), so every client is a different chip with its own data order.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analog.energy import EventCounter, counting
from analog.inference import program_weights
from common.validation import ConfigError
from protos import codec as wire

from .autoencoder import Autoencoder, build_autoencoder, is_analog, resolve_kind
from .codec import quantize_latents, wire_report
from .config import EdgeConfig, check_client_id
from .defense import STREAM_ANCHORS, STREAM_TEST, STREAM_TRAIN, release_latents, release_report
from .state import ClientState
from .summary import DefenseReport, EvaluationSummary, Timings, UploadRecord, UploadSummary, WireReport
from .data import DataError, Dataset, load_dataset, partition_indices, public_anchor_indices, split_train_test
from .pretrain import load_weights
from .training import encode, train_autoencoder
from protos.client import LatentClient, RetryPolicy, TlsOptions

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
TOKEN_FILE = "token"
SUMMARY_FILE = "summary.json"
TRAIN_LATENTS_FILE = "train_latents.npy"   # float latents of the training split, before quantization


def client_seed(seed: int, partition_id: int) -> int:
    """A per-client seed derived from the fleet seed (independent streams per client)."""
    return int(np.random.SeedSequence([int(seed), int(partition_id), 0x5EED]).generate_state(1)[0])


@dataclass
class ClientData:
    dataset: Dataset
    train_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def x_train(self) -> np.ndarray:
        return self.dataset.x[self.train_idx]

    @property
    def y_train(self) -> np.ndarray:
        return self.dataset.y[self.train_idx]

    @property
    def x_test(self) -> np.ndarray:
        return self.dataset.x[self.test_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.dataset.y[self.test_idx]


def client_data(cfg: EdgeConfig, partition_id: int, num_partitions: int, alpha: float | None) -> ClientData:
    """This client's partition of the dataset, split into local train and held-out test."""
    ds = load_dataset(cfg.data.source)
    if cfg.public.size and cfg.public.path is None:   # the public slice belongs to no partition
        pool = np.setdiff1d(np.arange(len(ds)), public_anchor_indices(ds.y, cfg.public.size))
        part = pool[partition_indices(ds.y[pool], num_partitions, partition_id, alpha=alpha, seed=cfg.seed)]
    else:
        part = partition_indices(ds.y, num_partitions, partition_id, alpha=alpha, seed=cfg.seed)
    rng = np.random.default_rng(client_seed(cfg.seed, partition_id))
    if cfg.data.max_samples and part.size > cfg.data.max_samples:
        part = np.sort(rng.choice(part, cfg.data.max_samples, replace=False))
    train, test = split_train_test(part, ds.y, cfg.data.test_fraction, seed=client_seed(cfg.seed, partition_id) + 1)
    if train.size == 0:
        raise DataError(f"partition {partition_id}/{num_partitions}: no training samples "
                         f"({part.size} in the partition)")
    return ClientData(ds, train, test)


def public_anchor_images(cfg: EdgeConfig) -> np.ndarray:
    """The public anchor images every client encodes (the same ones, in the same order, everywhere):
    the first `cfg.public.size` images of `cfg.public.path`, or the dataset's held-out public slice."""
    if not cfg.public.size:
        raise ConfigError("public.size: 0, this config has no public anchor set")
    ds = load_dataset(cfg.data.source)
    if cfg.public.path is None:
        return ds.x[public_anchor_indices(ds.y, cfg.public.size)]
    pub = load_dataset(cfg.public.path)
    if pub.image_shape != ds.image_shape:
        raise DataError(f"public.path: images are {pub.image_shape}, the dataset's are {ds.image_shape}")
    if len(pub) < cfg.public.size:
        raise DataError(f"public.path: holds {len(pub)} images, public.size asks for {cfg.public.size}")
    return pub.x[: cfg.public.size]


def anchor_set_sha256(images: np.ndarray) -> str:
    """SHA-256 of a public anchor set (shape, then the float32 pixels in order): two parties hold the
    same public images exactly when their digests agree, without sending the images."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    digest = hashlib.sha256(repr(tuple(x.shape)).encode())
    digest.update(x.tobytes())
    return digest.hexdigest()


def upload_anchors(client: LatentClient, client_id: str, token: str, model: Autoencoder, cfg: EdgeConfig,
                   scale: list[float] | None, seed: int):
    """Encode the public anchors with this chip's encoder, quantize them on the training upload's
    grid (`scale`) and upload them flagged as anchors; None when the config uploads no anchors.
    The defense's clip and noise apply to them as to every released row (edge_client/defense.py)."""
    if not (cfg.public.size and cfg.public.upload):
        return None
    z_a = release_latents(encode(model, public_anchor_images(cfg)), cfg.defense, seed, STREAM_ANCHORS)
    q_a = _quantize_like(z_a, cfg.wire.bits, scale, seed + 4)
    return client.upload(client_id, token, q_a, np.arange(q_a.num_rows), anchors=True, chunk_bytes=cfg.wire.chunk_bytes)


def _quantize_like(z: np.ndarray, bits: int, scale: list[float] | None, seed: int):
    """Quantize with an earlier upload's scale (clipping beyond it), so these latents share its grid."""
    if scale:
        qmax = {8: 127, 4: 7}[bits]
        z = np.clip(z, -np.asarray(scale) * qmax, np.asarray(scale) * qmax)
    return quantize_latents(z, bits, scale=scale or None, seed=seed)


def _tls(cfg: EdgeConfig, tls: TlsOptions | None) -> TlsOptions | None:
    if tls is not None or cfg.link.tls_ca is None:
        return tls
    return TlsOptions.from_files(cfg.link.tls_ca, cfg.link.tls_cert, cfg.link.tls_key, cfg.link.tls_server_name)


def _retry(cfg: EdgeConfig) -> RetryPolicy:
    return RetryPolicy(max_attempts=cfg.link.max_attempts, initial_s=cfg.link.backoff_initial_s,
                       max_s=cfg.link.backoff_max_s, multiplier=cfg.link.backoff_multiplier,
                       timeout_s=cfg.link.rpc_timeout_s)


def build_client_autoencoder(cfg: EdgeConfig, image_shape: tuple[int, int, int], seed: int) -> Autoencoder:
    """This client's untrained AE on its own chip: `seed` (see `client_seed`) seeds the tiles."""
    torch.manual_seed(seed)  # tile d2d variation and noise streams of this client's chip
    model = build_autoencoder(image_shape, cfg.model.latent_dim, cfg.model.autoencoder, tile_config=cfg.tile_config(),
                              conv_channels=cfg.model.conv_channels, mlp_hidden=cfg.model.mlp_hidden,
                              init_seed=cfg.init.seed if cfg.init.seed is not None else seed)
    return model


def program_initial_weights(model: Autoencoder, cfg: EdgeConfig, seed: int,
                            state: dict[str, torch.Tensor] | None = None) -> int:
    """Program pretrained weights onto this chip (analog tiles: through the simulator's programming
    path, with `cfg.init.programming`'s noise; digital: loaded exactly): `state` as received, else
    the file `cfg.init.weights` on this device. Returns the weights' float32 bytes."""
    if state is None:
        state = load_weights(cfg.init.weights)
    if is_analog(model):
        program_weights(model, state, cfg.init.programming_model(), seed=seed)
    else:
        model.load_state_dict(state)
    return sum(int(t.numel()) * t.element_size() for t in state.values())


def save_token(state_dir: Path, token: str) -> None:
    """Keep the upload token beside the encoder, readable by this user only (it authenticates)."""
    _write_private(Path(state_dir) / TOKEN_FILE, token)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def train_and_upload(cfg: EdgeConfig, server_address: str, client_id: str, partition_id: int,
                     num_partitions: int, alpha: float | None, state_dir: str | Path,
                     tls: TlsOptions | None = None, progress: bool = True,
                     init_state: dict[str, torch.Tensor] | None = None) -> UploadSummary:
    """Train this client's AE, upload its quantized training latents, save encoder/decoder locally.
    `init_state`: pretrained weights received from the server (else `cfg.init.weights`, else seeded)."""
    check_client_id(client_id)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    data = client_data(cfg, partition_id, num_partitions, alpha)
    times["data_s"] = time.perf_counter() - t

    seed = client_seed(cfg.seed, partition_id)
    # Register (or, with an issued token, reach the server) before training: an unreachable server, a
    # wrong secret or a latent_dim clash costs seconds, not a whole training run.
    t = time.perf_counter()
    with LatentClient(server_address, tls=_tls(cfg, tls), retry=_retry(cfg), seed=seed) as client:
        if cfg.link.token:
            client.status(client_id, cfg.link.token)   # checks the token too
            token = cfg.link.token
        else:
            # a re-run re-registers with the token it holds: an existing id needs proof
            saved = (state / TOKEN_FILE).read_text().strip() if (state / TOKEN_FILE).is_file() else None
            token = client.register(client_id, cfg.model.latent_dim, wire.BITS_TO_DTYPE[cfg.wire.bits],
                                    np.unique(data.y_train).tolist(), cfg.link.enrollment_secret, token=saved)
    times["register_s"] = time.perf_counter() - t
    save_token(state, token)

    t = time.perf_counter()
    events = EventCounter()     # what the tiles do, per phase (analog.energy; priced by the fleet report)
    # a chip given pretrained weights is programmed once, with those: the simulator's random
    # initialisation before it is not counted then
    pretrained = init_state is not None or bool(cfg.init.weights)
    with counting(events if not pretrained else None), events.phase("program"):
        model = build_client_autoencoder(cfg, data.dataset.image_shape, seed)
    hooks = events.watch_digital(model)         # a digital model's layers (an analog one has none)
    with counting(events), events.phase("program"):
        events.name_tiles(model)
        init_bytes = program_initial_weights(model, cfg, seed, init_state) if pretrained else 0
    with counting(events), events.phase("train"):
        result = train_autoencoder(model, data.x_train, data.x_test, epochs=cfg.training.epochs,
                                   batch_size=cfg.training.batch_size,
                                   lr=cfg.training.lr, optimizer=cfg.training.optimizer, seed=seed, progress=progress,
                                   desc=f"{client_id} AE", y_train=data.y_train, defense=cfg.defense,
                                   num_classes=data.dataset.num_classes)
    times["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with counting(events), events.phase("encode"):
        z = encode(model, data.x_train)
        z_rel = release_latents(z, cfg.defense, seed, STREAM_TRAIN)   # clip + noise before quantization
        quant = quantize_latents(z_rel, cfg.wire.bits, cfg.wire.per_feature_scale, seed=seed + 2)
        events.digital("dig_quant", z.size)
    z_hat = quant.dequantize()
    times["encode_s"] = time.perf_counter() - t
    torch.save(model.encoder.state_dict(), state / ENCODER_FILE)
    torch.save(model.decoder.state_dict(), state / DECODER_FILE)
    # kept on the device: re-quantizing at another bit width must start from these very latents (an
    # analog encoder's reads are noisy, so encoding again would give others)
    np.save(state / TRAIN_LATENTS_FILE, z)

    t = time.perf_counter()
    with LatentClient(server_address, tls=_tls(cfg, tls), retry=_retry(cfg), seed=seed) as client:
        uploads = client.upload_all(client_id, token, quant, data.y_train,
                                    rows_per_upload=cfg.wire.rows_per_upload, chunk_bytes=cfg.wire.chunk_bytes)
        with counting(events), events.phase("encode"):
            anchor_up = upload_anchors(client, client_id, token, model, cfg, quant.scale_list(), seed)
    for hook in hooks:
        hook.remove()
    times["upload_s"] = time.perf_counter() - t

    anchor_bytes = anchor_up.wire_bytes if anchor_up is not None else 0
    sent = wire_report(quant.num_rows, cfg.model.latent_dim, cfg.wire.bits, data.dataset.pixels,
                       wire_bytes=sum(u.wire_bytes for u in uploads) + anchor_bytes)
    z_std = float(z_rel.std()) or 1.0
    defense = None
    if cfg.defense.active:   # epsilon per released row and the training objective (docs/privacy.md)
        defense = DefenseReport(**release_report(z, cfg.defense).to_dict(),
                                nopeek_weight=cfg.defense.nopeek_weight, label_weight=cfg.defense.label_weight,
                                prototype_weight=cfg.defense.prototype_weight)
    summary = UploadSummary(
        client_id=client_id,
        server=server_address,
        dataset=data.dataset.name,
        partition=f"{partition_id}/{num_partitions}",
        alpha=alpha,
        autoencoder=resolve_kind(cfg.model.autoencoder, data.dataset.image_shape),
        analog=result.analog,
        n_train=int(data.train_idx.size),
        n_test=int(data.test_idx.size),
        labels=tuple(np.bincount(data.y_train, minlength=data.dataset.num_classes).tolist()),
        wire=WireReport(**sent),
        per_feature_scale=cfg.wire.per_feature_scale,
        scale=tuple(quant.scale_list()),
        quantization_rmse_rel=float(np.sqrt(np.mean((z_hat - z_rel) ** 2))) / z_std,
        recon_mse_initial=result.initial_val_mse,
        recon_mse=result.val_mse,
        train_loss=tuple(result.train_loss),
        uploads=tuple(UploadRecord(upload_id=u.upload_id, rows=u.rows, rows_stored=u.rows_stored,
                                   duplicate=u.duplicate, attempts=u.attempts, chunks=u.chunks,
                                   retry_codes=tuple(u.retry_codes)) for u in uploads),
        rows_stored=sum(u.rows_stored for u in uploads),
        anchor_rows=anchor_up.rows_stored if anchor_up is not None else 0,
        anchor_wire_bytes=anchor_bytes,
        init_bytes_down=init_bytes,
        client_total_rows=uploads[-1].client_total_rows if uploads else 0,
        attempts=sum(u.attempts for u in uploads),
        timings=Timings(**times, total_s=sum(times.values())),
        state_dir=str(state),
        events=events.to_dict(),
        defense=defense,
    )
    ClientState(client_id=client_id, partition_id=partition_id, num_partitions=num_partitions, alpha=alpha,
                seed=seed, latent_dim=cfg.model.latent_dim, bits=cfg.wire.bits, scale=quant.scale_list(),
                config=cfg.to_dict(), image_shape=list(data.dataset.image_shape)).save(state)
    (state / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2))
    return summary


def load_encoder(cfg: EdgeConfig, state_dir: str | Path, image_shape: tuple[int, int, int],
                 partition_id: int) -> Autoencoder:
    """Rebuild the AE (same config and seed, hence the same chip) and load the saved encoder."""
    state = Path(state_dir)
    path = state / ENCODER_FILE
    if not path.exists():
        raise FileNotFoundError(f"state_dir: {path} not found; run train_and_upload first")
    model = build_client_autoencoder(cfg, image_shape, client_seed(cfg.seed, partition_id))
    model.encoder.load_state_dict(torch.load(path, weights_only=True))
    return model


def saved_config(state_dir: str | Path) -> EdgeConfig:
    """The EdgeConfig a client in `state_dir` was trained with (tokens and secrets are never saved)."""
    return EdgeConfig.from_dict(ClientState.load(state_dir).config)


def _dotted(table: dict, key: str) -> Any:
    """`table["a"]["b"]` for the key "a.b" (None where a level is missing)."""
    for part in key.split("."):
        table = table.get(part) if isinstance(table, dict) else None
    return table


def evaluate_with_server(cfg: EdgeConfig, server_address: str, client_id: str, partition_id: int,
                         num_partitions: int, alpha: float | None, state_dir: str | Path,
                         tls: TlsOptions | None = None) -> EvaluationSummary:
    """Honest per-client accuracy: encode the local held-out split with this client's own encoder
    (quantized like its uploads) and ask the server's Classify. `cfg` must match the training config
    in everything that shapes the data split or the encoder (checked; see `saved_config`)."""
    check_client_id(client_id)
    state = Path(state_dir)
    saved = ClientState.load(state)
    saved.check_matches(state, client_id=client_id, partition_id=partition_id, num_partitions=num_partitions,
                        alpha=alpha)
    trained_cfg = dict(saved.config)
    # states saved before a defense key existed were trained with its default
    trained_cfg["defense"] = {**EdgeConfig().to_dict()["defense"], **saved.config.get("defense", {})}
    now = cfg.to_dict()
    for key in ("data.dataset", "data.path", "seed", "data.max_samples", "data.test_fraction", "model.autoencoder",
                "model.latent_dim", "model.conv_channels", "model.mlp_hidden", "init.seed", "analog", "public.size",
                "public.path", "defense"):
        was, got = _dotted(trained_cfg, key), _dotted(now, key)
        if was != got:
            raise ConfigError(f"{key}: got {got!r}, but {state} was trained with {was!r}")
    data = client_data(cfg, partition_id, num_partitions, alpha)
    n_test = int(data.test_idx.size)
    if n_test == 0:
        return EvaluationSummary(client_id=client_id, n_test=0, correct=0, accuracy=float("nan"))
    model = load_encoder(cfg, state, data.dataset.image_shape, partition_id)
    # the held-out rows are released to Classify: the same clip and noise as every released row
    z = release_latents(encode(model, data.x_test), cfg.defense, saved.seed, STREAM_TEST)
    # reuse the upload's scale: the test latents look like the training ones
    quant = _quantize_like(z, saved.bits, saved.scale or None, saved.seed + 3)
    token = cfg.link.token or (state / TOKEN_FILE).read_text().strip()
    t = time.perf_counter()
    with LatentClient(server_address, tls=_tls(cfg, tls), retry=_retry(cfg), seed=saved.seed) as client:
        pred = client.classify_batched(client_id, token, quant)
    correct = int((pred == data.y_test).sum())
    per_class = {int(c): float((pred[data.y_test == c] == c).mean()) for c in np.unique(data.y_test)}
    return EvaluationSummary(client_id=client_id, n_test=n_test, correct=correct, accuracy=correct / n_test,
                             per_class_accuracy=per_class, classify_s=time.perf_counter() - t)
