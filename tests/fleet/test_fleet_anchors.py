"""Public-set alignment through a fleet run (local backend, digital tiles, `digits`): the server's
pretrained weights reach every client (bytes down counted), anchors go up flagged as anchors
(bytes up counted, never stored as rows), and --compare-alignment prices every row."""
import json

import numpy as np
import pytest
import torch

from edge_client import runner as edge_runner
from fleet.experiments.alignment import compare_alignment
from fleet.run.client_tasks import requantize_upload
from fleet.names import client_name
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.run.pipeline import execute
from fleet.run.service import ServiceHandle
from fleet.run.transport import LocalTransport
from server.store import LatentStore


def _fleet(**over) -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "anchors", "dataset": "digits", "num_clients": 3, "seed": 0, "backend": "local",
                  "server": "inprocess", "digital": True, **over},
        "alignment": {"init": "pretrained", "anchors": True, "public_set": 100, "pretrain_epochs": 20},
        "edge": {"model": {"latent_dim": 8, "autoencoder": "mlp"},
                 "wire": {"bits": 8},
                 "training": {"epochs": 3, "lr": 0.01}},
        "classifier": {"hidden": [32], "epochs": 15, "lr": 0.1}})


def test_pretrained_anchor_fleet_counts_both_directions(tmp_path):
    fleet = _fleet(torch_threads=1)
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rep = execute(fleet, tmp_path / "run", LocalTransport(fleet.num_clients))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(caller)
    lat = rep["latent"]
    pre = lat["pretrained"]
    # the server side's pretraining ran on fleet.torch_threads, and the caller's setting came back
    assert pre["torch_threads"] == 1 and after == 2
    assert 0 < pre["cpu_seconds"]
    # the weights reach each client in its train message: bytes down are what crossed, the float32
    # payload plus Flower's per-array headers
    assert pre["bytes"] > 1000 and pre["bytes"] < pre["wire_bytes"] < 1.05 * pre["bytes"]
    assert lat["bytes_down"] == fleet.num_clients * pre["wire_bytes"]
    assert [c["init_weights_bytes"] for c in lat["clients"]] == [pre["bytes"]] * 3
    # 100 anchors x 8 dims x 1 byte + 100 int32 indices, plus framing, from every client
    assert lat["anchor_bytes_up"] >= fleet.num_clients * 100 * (8 + 4)
    assert lat["bytes_up"] > lat["anchor_bytes_up"]
    assert lat["store_matches"] and lat["rows_stored"] == lat["rows_sent"]     # anchors are not rows
    assert lat["classifier"]["anchor_map"] == "lstsq"
    assert [c["stored_anchor_rows"] for c in lat["clients"]] == [100] * 3
    assert lat["accuracy"] > 0.5                                                 # 10 classes: chance is 0.1
    assert json.loads((tmp_path / "run" / "report.json").read_text())["latent"]["bytes_down"] == lat["bytes_down"]


def test_compare_alignment_rows_share_partitions_and_price_their_bytes(tmp_path):
    fleet = _fleet().with_overrides(alignment="shared_init")
    res = compare_alignment(fleet, tmp_path / "cmp", only=["shared_init", "shared_init+anchors (ridge)"])
    rows = res["rows"]
    plain, mapped = rows["shared_init"], rows["shared_init+anchors (ridge)"]
    assert mapped["bytes_up"] > plain["bytes_up"] and plain["bytes_down"] == mapped["bytes_down"] == 0
    assert "shared_init+anchors (ridge)" in res["table"]
    with pytest.raises(FleetError, match="--options: got 'magic'"):
        compare_alignment(fleet, tmp_path / "cmp2", only=["magic"])


@pytest.mark.parametrize("saved_latents", [True, False])
def test_a_requantized_point_uploads_anchors_from_each_clients_trained_encoder(tmp_path, saved_latents):
    """The sweep's further bit widths re-use each client's trained encoder: the anchors a re-quantized
    point uploads must be that client's own encoding of the public images, on its upload's grid.
    At the first point's bit width they therefore equal, row for row, what the first run stored
    (digital tiles: encoding is deterministic, quantization is seeded); an untrained, another
    client's, or no encoder fails that. Both branches: the saved training latents re-used, or
    (when they are missing) the training split re-encoded."""
    fleet = _fleet()
    execute(fleet, tmp_path / "run", LocalTransport(fleet.num_clients))
    src = tmp_path / "run" / "clients"
    if not saved_latents:
        for pid in range(fleet.num_clients):
            (src / client_name(pid) / edge_runner.TRAIN_LATENTS_FILE).unlink()
    with LatentStore(tmp_path / "run" / "server", readonly=True) as first:
        before = {client_name(pid): first.anchor_latents(client_name(pid)) for pid in range(fleet.num_clients)}
    with ServiceHandle(tmp_path / "rq" / "server", fleet.classifier_config, "inprocess") as svc:
        ups = [requantize_upload(fleet, pid, src / client_name(pid), tmp_path / "rq" / "clients" / client_name(pid),
                                 svc.address) for pid in range(fleet.num_clients)]
        status = svc.status()
    assert all(u.anchor_wire_bytes >= 100 * (8 + 4) for u in ups)        # 100 anchors: 8 int8 + int32 index
    assert [status["clients"][client_name(p)]["anchor_rows"] for p in range(fleet.num_clients)] == [100] * 3
    with LatentStore(tmp_path / "rq" / "server", readonly=True) as again:
        for cid, (z0, idx0) in before.items():
            z1, idx1 = again.anchor_latents(cid)
            np.testing.assert_array_equal(idx1, idx0)
            np.testing.assert_array_equal(z1, z0)
    # the clients' encoders really differ, so equality above is per client, not a shared encoding
    assert not np.allclose(before[client_name(0)][0], before[client_name(1)][0], atol=1e-3)
