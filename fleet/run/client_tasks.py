"""What one edge device does in each phase, as plain functions of (fleet config, partition).

The Flower `ClientApp` (fleet/flower/client_app.py) and the in-process `local` transport both call these,
so a simulated fleet, a sequential debug run and real SuperNodes run the identical code. The latent
phases return the records of fleet/run/messages.py (JSON in a Flower reply), which the ServerApp collects.

What a device reads: the task (the train message: the fleet config, the latent service's address
and TLS root certificate, the public set's SHA-256, the pretrained weights), its node config
(partition, its state folder, optionally where its copies of the dataset and the public set are),
its state folder, and its own copy of the dataset. Never a file of the server's run folder.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.memory import keep_heap_warm
from edge_client import runner as edge_runner
from edge_client.codec import quantize_latents, wire_report
from edge_client.defense import STREAM_TRAIN, release_latents
from edge_client.state import ClientState
from edge_client.summary import WireReport
from edge_client.training import encode
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.names import client_name
from fleet.run.fedavg import build_mlp, evaluate, get_arrays, set_arrays, train_local
from fleet.run.messages import ClientEvaluation, ClientUpload, LatentTask, RequantizedUpload
from protos.client import LatentClient, TlsOptions


def _prepare_process() -> None:
    """One virtual client = one CPU (Ray gives each actor num_cpus=1): torch must not oversubscribe.
    And the heap is kept warm (common.memory.keep_heap_warm): an analog conv step frees and reallocates
    megabytes of patches and noise, which glibc otherwise hands back to the OS and page-faults in
    again, hundreds of times per step (benchmarks/analog_step.py counts them)."""
    n = int(os.environ.get("ANALOG_EDGE_CLIENT_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    keep_heap_warm()


def _state_dir(state_root: str, partition_id: int) -> Path:
    path = Path(state_root) / client_name(partition_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class InitWeights:
    """Pretrained AE weights as a device received them, and the bytes they crossed the wire as."""

    state: dict[str, torch.Tensor]
    wire_bytes: int


class PublicSetMismatch(FleetError):
    """This device's public anchor images are not the server's (their SHA-256 digests differ)."""


def check_public_set(fleet: FleetConfig, expected_sha256: str | None) -> None:
    """Fail before any training when this device's public anchor set is not the one the server
    pretrained on and maps with (the task carries the server's digest; the images never travel)."""
    cfg = fleet.edge_config
    if not cfg.public.size or not expected_sha256:
        return
    if cfg.public.path is not None and not Path(cfg.public.path).expanduser().exists():
        raise FleetError(f"edge.public.path: {cfg.public.path} does not exist on this device; copy the server's public "
                         "images there, or name this device's copy with --node-config \"anchor-path='<file>'\"")
    source = f"public.path {cfg.public.path}" if cfg.public.path else f"the held-out slice of {cfg.data.source}"
    own = edge_runner.anchor_set_sha256(edge_runner.public_anchor_images(cfg))
    if own != expected_sha256:
        raise PublicSetMismatch(f"anchors: this device's public set ({cfg.public.size} images, {source}) has SHA-256 "
                                f"{own[:16]}..., the server's has {expected_sha256[:16]}...; every device needs "
                                "the server's public images")


def latent_tls(ca_pem: str | None) -> TlsOptions | None:
    """TLS to the latent service with the root certificate the task carries (None: plaintext)."""
    return TlsOptions(ca_pem.encode()) if ca_pem else None


def latent_train(fleet: FleetConfig, partition_id: int, num_partitions: int, task: LatentTask,
                 state_root: str, init: InitWeights | None = None, progress: bool = False) -> ClientUpload:
    """Train the autoencoder on analog tiles, encode, quantize and upload this partition's latents.
    `task`: the train message (its `server_address`, `latent_ca_pem` and `anchor_sha256` are used);
    `init`: the pretrained weights it carried (alignment "pretrained" starts from them, programmed
    onto this chip)."""
    _prepare_process()
    cfg = fleet.edge_config
    # what this device must hold, checked before it registers or trains: its data, the public set
    cfg.data.check_source("edge.data.path (node config data-path)" if cfg.data.path else "fleet.dataset")
    check_public_set(fleet, task.anchor_sha256)
    if fleet.alignment.pretrained and init is None:
        raise FleetError(f"train message: no pretrained weights, but alignment {fleet.alignment.label!r} "
                         "starts every client from them")
    t0 = time.perf_counter()
    summary = edge_runner.train_and_upload(cfg, task.server_address, client_name(partition_id), partition_id,
                                           num_partitions, fleet.alpha_or_none, _state_dir(state_root, partition_id),
                                           tls=latent_tls(task.latent_ca_pem), progress=progress,
                                           init_state=init.state if fleet.alignment.pretrained and init else None)
    return ClientUpload(summary, partition_id=partition_id, num_partitions=num_partitions,
                        wall_s=time.perf_counter() - t0,
                        init_wire_bytes=init.wire_bytes if fleet.alignment.pretrained and init else 0)


def latent_evaluate(fleet: FleetConfig, partition_id: int, num_partitions: int, server_address: str,
                    state_root: str, latent_ca_pem: str | None = None) -> ClientEvaluation:
    """Encode the local held-out split with this device's own encoder and ask the server to classify."""
    _prepare_process()
    cfg = fleet.edge_config
    t0 = time.perf_counter()
    evaluation = edge_runner.evaluate_with_server(cfg, server_address, client_name(partition_id), partition_id,
                                                  num_partitions, fleet.alpha_or_none,
                                                  _state_dir(state_root, partition_id), tls=latent_tls(latent_ca_pem))
    return ClientEvaluation(evaluation, partition_id=partition_id, wall_s=time.perf_counter() - t0)


def requantize_upload(fleet: FleetConfig, partition_id: int, src_state: Path, dst_state: Path,
                      server_address: str) -> RequantizedUpload:
    """Re-use a trained encoder: its training-split latents (saved by the first bit width) quantized at
    the new bit width, uploaded to the (fresh) service, and a state dir `latent_evaluate` can use."""
    er = edge_runner
    cfg = fleet.edge_config
    n = fleet.num_clients
    data = er.client_data(cfg, partition_id, n, fleet.alpha_or_none)
    dst_state.mkdir(parents=True, exist_ok=True)
    for name in (er.ENCODER_FILE, er.DECODER_FILE):
        shutil.copy2(src_state / name, dst_state / name)
    seed = er.client_seed(cfg.seed, partition_id)
    saved = src_state / er.TRAIN_LATENTS_FILE
    encoder = None
    if saved.exists():   # the latents the first bit width quantized: a point does not depend on the grid
        z = np.load(saved)
    else:
        encoder = er.load_encoder(cfg, dst_state, data.dataset.image_shape, partition_id)
        z = encode(encoder, data.x_train)
    if encoder is None and cfg.public.size and cfg.public.upload:   # the anchors need the trained encoder
        encoder = er.load_encoder(cfg, dst_state, data.dataset.image_shape, partition_id)
    # the same clip and noise (same seed and stream: the same noisy rows) as the first bit width released
    z = release_latents(z, cfg.defense, seed, STREAM_TRAIN)
    quant = quantize_latents(z, cfg.wire.bits, cfg.wire.per_feature_scale, seed=seed + 2)
    cid = client_name(partition_id)
    with LatentClient(server_address) as client:
        token = client.register(cid, cfg.model.latent_dim, quant.dtype, np.unique(data.y_train).tolist())
        uploads = client.upload_all(cid, token, quant, data.y_train, chunk_bytes=cfg.wire.chunk_bytes)
        anchor_up = er.upload_anchors(client, cid, token, encoder, cfg, quant.scale_list(), seed)
    ClientState.load(src_state).replace(bits=cfg.wire.bits, scale=quant.scale_list(),
                                        config=cfg.to_dict()).save(dst_state)
    er.save_token(dst_state, token)
    src_summary = json.loads((src_state / er.SUMMARY_FILE).read_text())
    anchor_bytes = anchor_up.wire_bytes if anchor_up is not None else 0
    sent = wire_report(quant.num_rows, cfg.model.latent_dim, cfg.wire.bits, data.dataset.pixels,
                       wire_bytes=sum(u.wire_bytes for u in uploads) + anchor_bytes)
    recon = src_summary.get("recon_mse")       # a bare {"recon_mse"} file in the alignment comparison
    return RequantizedUpload(WireReport(**sent), client_id=cid, anchor_wire_bytes=anchor_bytes,
                             partition_id=partition_id, recon_mse=float(recon) if recon is not None else None,
                             n_train=int(data.train_idx.size), n_test=int(data.test_idx.size))


class LocalData:
    """This client's raw (train, test) tensors, split exactly as the latent pipeline splits them."""

    def __init__(self, fleet: FleetConfig, partition_id: int, num_partitions: int) -> None:
        cfg = fleet.edge_config
        split = edge_runner.client_data(cfg, partition_id, num_partitions, fleet.alpha_or_none)
        ds, train_idx, test_idx = split.dataset, split.train_idx, split.test_idx
        self.num_classes = int(ds.num_classes)
        self.pixels = int(ds.pixels)
        self.x_train = torch.as_tensor(ds.x[train_idx]).reshape(len(train_idx), -1)
        self.y_train = torch.as_tensor(ds.y[train_idx])
        self.x_test = torch.as_tensor(ds.x[test_idx]).reshape(len(test_idx), -1)
        self.y_test = torch.as_tensor(ds.y[test_idx])


def fedavg_model(fleet: FleetConfig, pixels: int, num_classes: int) -> tuple[nn.Module, bool]:
    """The baseline model, identical on every client and on the server (seeded by the fleet seed)."""
    clf = fleet.classifier_config
    tile = clf.tile_config() if fleet.fedavg.analog else None
    return build_mlp(pixels, list(clf.hidden), num_classes, tile, fleet.seed), tile is not None


def fedavg_fit(fleet: FleetConfig, partition_id: int, num_partitions: int, arrays: dict,
               server_round: int) -> tuple[dict, dict[str, float]]:
    """One FedAvg round on this client: load the global weights, train locally, return new weights."""
    _prepare_process()
    data = LocalData(fleet, partition_id, num_partitions)
    model, is_analog = fedavg_model(fleet, data.pixels, data.num_classes)
    set_arrays(model, arrays)
    t0 = time.perf_counter()
    loss = train_local(model, data.x_train, data.y_train, fleet.fedavg.local_epochs, fleet.fedavg.batch_size,
                       fleet.fedavg.lr, is_analog, seed=fleet.seed + 7919 * server_round + partition_id)
    metrics = {"num-examples": float(len(data.x_train)), "train_loss": float(loss),
               "partition_id": float(partition_id), "train_s": time.perf_counter() - t0}
    return get_arrays(model), metrics


def fedavg_eval(fleet: FleetConfig, partition_id: int, num_partitions: int, arrays: dict) -> dict[str, float]:
    """Score the global model on this client's local test split (the same split as the latent path)."""
    _prepare_process()
    data = LocalData(fleet, partition_id, num_partitions)
    model, _ = fedavg_model(fleet, data.pixels, data.num_classes)
    set_arrays(model, arrays)
    correct, loss = evaluate(model, data.x_test, data.y_test)
    n = len(data.x_test)
    return {"num-examples": float(n), "correct": float(correct), "accuracy": correct / max(n, 1),
            "eval_loss": float(loss), "partition_id": float(partition_id)}
