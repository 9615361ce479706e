"""Measure the latent-alignment options of docs/design.md §1.3 against an oracle.

Each client's autoencoder defines its own latent space, yet one server classifier serves them all.
This runs the latent pipeline (in-process clients) under:
  none                   independent initialization, plain classifier
  shared_init            (a) same AE initial weights on every client
  embedding              (b) independent init, per-client embedding beside z in the classifier
  shared_init+embedding  (a) + (b)
  adapter                (c) independent init, per-client affine head A_c z + b_c before a shared trunk
  shared_init+adapter    (a) + (c)
  oracle                 one encoder trained on the pooled training splits of all clients
                         (what a central party with all images could do), copied to every client
and reports the honest fleet accuracy of each (per-client test splits, own encoder, Classify).
Embedding and adapter variants reuse the stores of their AE-only twins (same encoders, same
uploaded latents): only the classifier is retrained.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from edge_client import runner as er
from edge_client.state import ClientState
from edge_client.training import train_autoencoder
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.names import client_name
from fleet.run import LocalTransport, ServiceHandle, execute, latent_evaluate, requantize_upload, summarize_latent
from fleet.tables import grid, json_safe

OPTIONS = ("none", "shared_init", "embedding", "shared_init+embedding", "adapter", "shared_init+adapter", "oracle")
# With a public anchor set (fleet.alignment.public_set > 0) the comparison adds, on the same held-out slice:
PUBLIC_OPTIONS = ("shared_init+anchors", "shared_init+anchors+adapter", "pretrained", "pretrained+adapter",
                  "pretrained+anchors", "pretrained+anchors+adapter")
ANCHOR_MAPS = ("lstsq", "ridge", "procrustes")


def _twin(opt: str) -> str:
    """The trained run an option reuses: its initialization, with anchors uploaded when it maps them."""
    init = opt.split("+")[0] if opt.split("+")[0] in ("shared_init", "pretrained") else "none"
    return init


def _options(fleet: FleetConfig) -> list[tuple[str, str]]:
    """(row name, alignment) pairs; anchor rows once per map method."""
    rows: list[tuple[str, str]] = [(o, o) for o in OPTIONS if o != "oracle"]
    if fleet.alignment.public_set:
        for opt in PUBLIC_OPTIONS:
            if "anchors" in opt:
                rows += [(f"{opt} ({m})", opt) for m in ANCHOR_MAPS]
            else:
                rows.append((opt, opt))
    return rows + [("oracle", "oracle")]


def _reclassify(fleet: FleetConfig, run_dir: Path) -> dict[str, Any]:
    """Retrain the classifier on an existing run's store with `fleet`'s conditioning (and anchor
    map); re-evaluate."""
    clf = fleet.classifier_config
    with ServiceHandle(run_dir / "server", clf, "inprocess") as svc:
        cls = svc.train_classifier(clf)
        evals = [latent_evaluate(fleet, pid, fleet.num_clients, svc.address, str(run_dir / "clients"))
                 for pid in range(fleet.num_clients)]
    n = sum(e.evaluation.n_test for e in evals)
    accs = [e.evaluation.accuracy for e in evals]
    return {"accuracy": sum(e.evaluation.correct for e in evals) / n, "accuracy_min": min(accs),
            "accuracy_max": max(accs), "accuracy_std": float(np.std(accs)),
            "classifier_held_out": cls["held_out_accuracy"]}


def _row(lat: dict[str, Any], bytes_up: int, bytes_down: int, seconds: float) -> dict[str, Any]:
    return {"accuracy": lat["accuracy"], "accuracy_min": lat["accuracy_spread"]["min"],
            "accuracy_max": lat["accuracy_spread"]["max"], "accuracy_std": lat["accuracy_spread"]["std"],
            "classifier_held_out": lat["classifier"]["held_out_accuracy"], "recon_mse": lat["recon_mse"],
            "bytes_up": int(bytes_up), "bytes_down": int(bytes_down or 0), "seconds": seconds}


def _oracle(fleet: FleetConfig, out: Path) -> dict[str, Any]:
    """One AE on the pooled training splits, distributed to every client, then the usual phases."""
    cfg = fleet.edge_config
    n = fleet.num_clients
    datas = [er.client_data(cfg, pid, n, fleet.alpha_or_none) for pid in range(n)]
    x_tr = np.concatenate([d.x_train for d in datas])
    x_te = np.concatenate([d.x_test for d in datas])
    seed = er.client_seed(cfg.seed, 0)
    model = er.build_client_autoencoder(cfg, datas[0].dataset.image_shape, seed)
    res = train_autoencoder(model, x_tr, x_te, epochs=cfg.training.epochs, batch_size=cfg.training.batch_size,
                            lr=cfg.training.lr,
                            optimizer=cfg.training.optimizer, seed=seed, progress=False)
    src_root = out / "central"
    for pid in range(n):       # the oracle encoder, handed to each client as if it had trained it
        src = src_root / client_name(pid)
        src.mkdir(parents=True, exist_ok=True)
        torch.save(model.encoder.state_dict(), src / er.ENCODER_FILE)
        torch.save(model.decoder.state_dict(), src / er.DECODER_FILE)
        ClientState(client_id=client_name(pid), partition_id=pid, num_partitions=n, alpha=fleet.alpha_or_none,
                    seed=er.client_seed(cfg.seed, pid), latent_dim=cfg.model.latent_dim).save(src)
        (src / er.SUMMARY_FILE).write_text(json.dumps({"recon_mse": res.val_mse}))
    clf = fleet.classifier_config
    with ServiceHandle(out / "server", clf, "inprocess") as svc:
        ups = [requantize_upload(fleet, pid, src_root / client_name(pid), out / "clients" / client_name(pid),
                                 svc.address) for pid in range(n)]
        status = svc.status()
        cls = svc.train_classifier(clf)
        evals = [latent_evaluate(fleet, pid, n, svc.address, str(out / "clients")) for pid in range(n)]
        address = svc.address
    return summarize_latent(fleet, ups, evals, status, cls, address)


def compare_alignment(fleet: FleetConfig, out_dir: str | Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run every option (or the rows named in `only`); write alignment.json and alignment.txt.

    One fleet is trained per initialization (none, shared_init, pretrained; with a public anchor
    set every one holds it out and uploads its anchors, so all rows share partitions); every other
    row retrains only the classifier on its twin's store. Bytes: up = training latents (+ anchor
    latents for rows that map them), down = the pretrained weights."""
    out = Path(out_dir).resolve()
    base = fleet.with_overrides(backend="local", server="inprocess", mode="latent")
    options = [(name, a) for name, a in _options(base) if not only or name in only]
    unknown = sorted(set(only or ()) - {name for name, _ in _options(base)})
    if unknown:
        raise FleetError(f"--options: got {unknown[0]!r}, must be among: {', '.join(n for n, _ in _options(base))}")
    trained: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, opt in tqdm(options, desc="alignment options", unit="option"):
        t0 = time.perf_counter()
        if opt == "oracle":
            lat = _oracle(base.with_overrides(alignment="shared_init"), out / opt)
            rows[name] = _row(lat, lat["bytes_up"], 0, time.perf_counter() - t0)
            continue
        twin = _twin(opt)
        if twin not in trained:       # train this initialization's fleet once (anchors uploaded if any)
            train_as = twin if not base.alignment.public_set else ("anchors" if twin == "none" else f"{twin}+anchors")
            trained[twin] = execute(base.with_overrides(alignment=train_as), out / twin,
                                    LocalTransport(base.num_clients))["latent"]
        lat = trained[twin]
        amap = name.split("(")[1].rstrip(")") if "(" in name else None
        clf = {**base.classifier, **({"anchor_map": amap} if amap else {})}
        variant = base.with_overrides(alignment=opt, classifier=clf)
        re = _reclassify(variant, out / twin)
        up = lat["bytes_up"] - (0 if variant.alignment.anchors else lat["anchor_bytes_up"])
        rows[name] = {**_row(lat, up, lat["bytes_down"], time.perf_counter() - t0), **re}
    table = [["alignment", "fleet accuracy", "client min..max", "server held-out", "recon MSE", "bytes up",
              "bytes down"]]
    for opt, r in rows.items():
        table.append([opt, f"{100 * r['accuracy']:.1f}%", f"{100 * r['accuracy_min']:.0f}..{100 * r['accuracy_max']:.0f}%",
                      f"{100 * r['classifier_held_out']:.1f}%", f"{r['recon_mse']:.4f}",
                      f"{r['bytes_up'] / 1024:.0f} KiB", f"{r['bytes_down'] / 1024:.0f} KiB"])
    public = f", public anchor set {fleet.alignment.public_set}" if fleet.alignment.public_set else ""
    text = (f"latent alignment on {fleet.dataset}, {fleet.num_clients} clients, {fleet.partitioner}, "
            f"{'digital' if fleet.digital else 'analog'}, seed {fleet.seed}{public}\n" + grid(table))
    (out / "alignment.txt").write_text(text + "\n")
    (out / "alignment.json").write_text(json.dumps(json_safe({"config": fleet.to_dict(), "rows": rows}), indent=2))
    return {"rows": rows, "table": text}
