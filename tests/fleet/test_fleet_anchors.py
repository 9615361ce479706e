"""Public-set alignment through a fleet run (local backend, digital tiles, `digits`): the server's
pretrained weights reach every client (bytes down counted), anchors go up flagged as anchors
(bytes up counted, never stored as rows), and --compare-alignment prices every row."""
import json

import pytest

from fleet.alignment import compare_alignment
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.pipeline import execute
from fleet.transport import LocalTransport


def _fleet(**over) -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "anchors", "dataset": "digits", "num_clients": 3, "seed": 0, "backend": "local",
                  "server": "inprocess", "digital": True, "alignment": "pretrained+anchors", "anchors": 100,
                  "pretrain_epochs": 20, **over},
        "edge": {"latent_dim": 8, "bits": 8, "autoencoder": "mlp", "epochs": 3, "lr": 0.01},
        "classifier": {"hidden": [32], "epochs": 15, "lr": 0.1}})


def test_pretrained_anchor_fleet_counts_both_directions(tmp_path):
    fleet = _fleet()
    rep = execute(fleet, tmp_path / "run", LocalTransport(fleet.num_clients))
    lat = rep["latent"]
    pre = lat["pretrained"]
    assert pre["bytes"] > 1000 and lat["bytes_down"] == fleet.num_clients * pre["bytes"]
    # 100 anchors x 8 dims x 1 byte + 100 int32 indices, plus framing, from every client
    assert lat["anchor_bytes_up"] >= fleet.num_clients * 100 * (8 + 4)
    assert lat["bytes_up"] > lat["anchor_bytes_up"]
    assert lat["store_matches"] and lat["rows_stored"] == lat["rows_sent"]     # anchors are not rows
    assert lat["classifier"]["anchor_map"] == "lstsq"
    assert [c["stored_anchor_rows"] for c in lat["clients"]] == [100] * 3
    assert lat["accuracy"] > 0.5                                                 # 10 classes: chance is 0.1
    assert json.loads((tmp_path / "run" / "report.json").read_text())["latent"]["bytes_down"] == lat["bytes_down"]


def test_compare_alignment_rows_share_partitions_and_price_their_bytes(tmp_path):
    fleet = _fleet(alignment="shared_init")
    res = compare_alignment(fleet, tmp_path / "cmp", only=["shared_init", "shared_init+anchors (ridge)"])
    rows = res["rows"]
    plain, mapped = rows["shared_init"], rows["shared_init+anchors (ridge)"]
    assert mapped["bytes_up"] > plain["bytes_up"] and plain["bytes_down"] == mapped["bytes_down"] == 0
    assert "shared_init+anchors (ridge)" in res["table"]
    with pytest.raises(FleetError, match="--options: got 'magic'"):
        compare_alignment(fleet, tmp_path / "cmp2", only=["magic"])
