"""Sweep grid on `digits` (in-process clients, digital tiles: the grid logic, not the physics)."""
import csv

import pytest

from fleet.config import ConfigError, FleetConfig
from fleet.experiments.sweep import SweepSpec, run_sweep


def _fleet() -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "sweep", "dataset": "digits", "num_clients": 2, "digital": True, "backend": "local"},
        "edge": {"training": {"epochs": 2, "batch_size": 16, "lr": 0.03}},
        "classifier": {"hidden": [32], "epochs": 10},
    })


def test_sweep_grid_reuses_encoders_and_accounts_bytes(tmp_path):
    spec = SweepSpec.parse("4,16", "8,4")
    result = run_sweep(_fleet(), spec, tmp_path)
    rows = result["rows"]
    assert [(r["latent_dim"], r["bits"]) for r in rows] == [(4, 8), (4, 4), (16, 8), (16, 4)]
    for r in rows:
        payload = r["latent_dim"] * r["bits"] / 8 + 4                # latents + int32 label per row
        assert payload <= r["bytes_per_sample"] < payload + 0.5      # + protobuf framing, amortized
        assert r["compression_pixels"] == 64 / r["latent_dim"]
        # the fleet figure is the sample-weighted mean of the clients': inside their range
        assert r["accuracy_min"] <= r["accuracy"] <= r["accuracy_max"]
        assert r["accuracy"] > 0.2 and r["classifier_held_out"] > 0.2      # 10 classes: chance is 0.1
    by = {(r["latent_dim"], r["bits"]): r for r in rows}
    for d in (4, 16):   # one AE per latent dim serves every bit width: identical reconstruction
        assert by[(d, 4)]["recon_mse"] == by[(d, 8)]["recon_mse"]
        assert by[(d, 4)]["compression_wire"] > by[(d, 8)]["compression_wire"]
        # ...but its latents really were re-quantized: 4 bits lose what 8 bits keep
        # (measured, seed 0: d=4 0.45 -> 0.26, d=16 0.68 -> 0.36)
        assert by[(d, 4)]["accuracy"] < by[(d, 8)]["accuracy"] - 0.1
    assert by[(16, 8)]["accuracy"] > by[(4, 8)]["accuracy"] + 0.1          # a larger latent keeps more
    assert by[(16, 8)]["accuracy"] > 0.3                      # 10 classes: chance is 0.1
    raw = result["references"]["raw_pixels"]["accuracy"]
    assert raw > 0.6
    with (tmp_path / "sweep.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert (tmp_path / "sweep.png").stat().st_size > 5000


def test_sweep_spec_errors_name_the_flag():
    with pytest.raises(ConfigError, match="bits: got 5"):
        SweepSpec.parse("4", "8,5")
    with pytest.raises(ConfigError, match="--latent-dims: got 'x'"):
        SweepSpec.parse("x", "8")
    fleet = _fleet().with_overrides(digital=False, analog={"device": {"type": "ReRAMSoftBounds"}})
    with pytest.raises(ConfigError, match="NoSuchDevice"):
        SweepSpec.parse("4", "8", devices="NoSuchDevice").tiles(fleet)


def test_sweep_lines_train_one_side_or_both_with_an_algorithm_or_preset():
    """``--algorithms NAME@edge`` swaps only the edge's table (the server keeps the config's),
    ``@server`` only the server's (the edge pinned to the config's own), a bare name both; a name may
    be an algorithm preset, whose table then goes to the side as given."""
    mp = {"device": {"type": "ReRAMSoftBounds"}, "algorithm": {"type": "MixedPrecision"}}
    fleet = _fleet().with_overrides(digital=False, analog=mp)
    lines = dict(SweepSpec.parse("4", "8", algorithms="AGAD@edge,agad-reram-sb@server,TTv2,config").tiles(fleet))
    assert list(lines) == ["AGAD on ReRAMSoftBounds, edge only", "agad-reram-sb on ReRAMSoftBounds, server only",
                           "TTv2 on ReRAMSoftBounds", "MixedPrecision on ReRAMSoftBounds"]
    assert lines["MixedPrecision on ReRAMSoftBounds"]["analog"] == mp
    edge = lines["AGAD on ReRAMSoftBounds, edge only"]
    assert edge["edge"]["algorithm"] == {"type": "AGAD"} and edge["analog"] == mp
    server = lines["agad-reram-sb on ReRAMSoftBounds, server only"]
    assert server["analog"]["algorithm"] == {"preset": "agad-reram-sb"} and server["edge"] == mp
    both = lines["TTv2 on ReRAMSoftBounds"]
    assert both["analog"]["algorithm"] == {"type": "TTv2"} and "edge" not in both   # the edge uses [analog]
    assert edge["line_algorithm"] == "AGAD@edge"
    (label, sides), = SweepSpec.parse("4", "8", algorithms="TTv2@edge+agad-reram-sb@server").tiles(fleet)
    assert label == "TTv2@edge+agad-reram-sb@server on ReRAMSoftBounds"
    assert sides["edge"]["algorithm"] == {"type": "TTv2"}
    assert sides["analog"]["algorithm"] == {"preset": "agad-reram-sb"}
    with pytest.raises(ConfigError, match="joins exactly one"):
        SweepSpec.parse("4", "8", algorithms="TTv2@edge+AGAD@edge").tiles(fleet)
    with pytest.raises(ConfigError, match="side: got 'cloud'"):
        SweepSpec.parse("4", "8", algorithms="AGAD@cloud").tiles(fleet)


def _rows():
    rows = []
    for label in ("TikiTaka on ReRAMSoftBounds", "digital"):
        for d in (4, 8, 16, 32):
            for bits in (32, 8, 4):
                wire = d * bits / 8 + 4.5                              # latents + label + framing
                acc = 0.5 + 0.01 * d - (0.1 if label != "digital" else 0)
                rows.append({"label": label, "latent_dim": d, "bits": bits, "compression_wire": 788 / wire,
                             "accuracy": acc, "seed_min": acc - 0.03, "seed_max": acc + 0.02})
    return rows


def test_sweep_figure_names_each_payload_once_and_hides_no_data():
    from fleet.experiments.sweep import sweep_figure

    fig = sweep_figure(_rows(), {"raw_pixels": {"accuracy": 0.92}}, "digits, 2 clients, iid, 3 seeds (0, 1, 2)")
    fig.canvas.draw()
    ax, top = fig.axes[0], fig.axes[1]
    names = [t.get_text() for t in top.get_xticklabels()]
    # d x bits = 128 is d=4@32b, d=16@8b, d=32@4b: one tick, not three labels printed over each other
    assert "d=4@32b, d=16@8b, d=32@4b" in names and len(names) == len(set(names)) == 7
    lo, hi = ax.get_xlim()
    shown = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi]
    assert shown and all(text.endswith("x") and "10^" not in text and "times" not in text for text in shown)
    assert "3 seeds (0, 1, 2)" in ax.get_title() and "d in {4, 8, 16, 32}" in ax.get_title()
    (legend,) = fig.legends
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    assert any(c.__class__.__name__ == "LineCollection" for c in ax.collections)   # seed min..max bars


def test_a_grid_point_does_not_depend_on_the_rest_of_the_grid(tmp_path):
    # analog tiles: an encoder's reads are noisy, so a bit width that re-encoded instead of
    # re-quantizing the first bit width's latents got other numbers than the same point run alone
    base = _fleet()
    fleet = base.with_overrides(digital=False, analog={"device": {"type": "ReRAMSoftBounds"}},
                                edge={**base.edge, "training": {**base.edge["training"], "epochs": 1}})
    alone = run_sweep(fleet, SweepSpec.parse("8", "8", references=False), tmp_path / "alone")["rows"]
    grid = run_sweep(fleet, SweepSpec.parse("8", "32,8", references=False), tmp_path / "grid")["rows"]
    (a,) = alone
    g = next(r for r in grid if r["bits"] == 8)
    assert (g["accuracy"], g["classifier_held_out"], g["bytes_up"]) == \
        (a["accuracy"], a["classifier_held_out"], a["bytes_up"])


def test_a_swept_algorithm_reaches_a_side_with_its_own_tile_table():
    # the sweep config gives the edge its own [edge.analog] (MixedPrecision with a dead zone): a line
    # of --algorithms must train that side with the swept algorithm too, not only the classifier
    base = _fleet()
    fleet = base.with_overrides(
        digital=False, analog={"device": {"type": "ReRAMSoftBounds"}, "algorithm": {"type": "MixedPrecision"}},
        edge={**base.edge, "analog": {"device": {"type": "ReRAMSoftBounds"},
                                      "algorithm": {"type": "MixedPrecision", "threshold": 4.0}}})
    (kept,) = SweepSpec.parse("4", "8").tiles(fleet)
    assert kept[0] == "MixedPrecision on ReRAMSoftBounds"
    assert kept[1]["edge"]["algorithm"] == {"type": "MixedPrecision", "threshold": 4.0}
    lines = dict(SweepSpec.parse("4", "8", algorithms="TikiTaka,AnalogSGD").tiles(fleet))
    assert sorted(lines) == ["AnalogSGD on ReRAMSoftBounds", "TikiTaka on ReRAMSoftBounds"]
    for label, tiles in lines.items():
        alg = label.split(" on ")[0]
        assert tiles["analog"]["algorithm"] == tiles["edge"]["algorithm"] == {"type": alg}
        assert tiles["edge"]["device"] == {"type": "ReRAMSoftBounds"} and "classifier" not in tiles


def test_sweep_privacy_adds_the_strongest_attack_per_point(tmp_path):
    """--privacy: every point, re-quantized ones included, runs the suite with the server's holdings
    (the first bit width's pretrained weights too) and gains its columns in the CSV and the table."""
    import json

    fleet = FleetConfig.from_dict({
        "fleet": {"name": "sweep", "dataset": "digits", "num_clients": 2, "digital": True, "backend": "local"},
        "alignment": {"init": "pretrained", "anchors": True, "public_set": 100, "pretrain_epochs": 5},
        "edge": {"training": {"epochs": 2, "batch_size": 16, "lr": 0.03}},
        "classifier": {"hidden": [32], "epochs": 5},
        "privacy": {"attack_epochs": 2, "epochs": 2, "hidden": 32},
    })
    result = run_sweep(fleet, SweepSpec.parse("16", "8,4", references=False, privacy=True), tmp_path)
    for r in result["rows"]:
        assert r["attack"] in ("pretrained_map_tuned", "pretrained_map", "anchor_decoder", "pretrained_raw")
        assert 0 <= r["attack_ssim"] <= 1 and 0 <= r["attack_reid"] <= 1 and abs(r["attack_gain_db"]) < 20
    requantized = json.loads((tmp_path / "points" / "digital" / "d16" / "b4" / "privacy.json").read_text())
    names = {row["attack"] for row in requantized["server_attack"]["rows"]}
    assert {"pretrained_map_tuned", "anchor_decoder", "class_mean", "own_decoder"} <= names
    with (tmp_path / "sweep.csv").open() as fh:
        assert {"attack_gain_db", "attack_ssim", "attack_reid"} <= set(next(csv.DictReader(fh)))
    assert "attack gain" in (tmp_path / "sweep_table.txt").read_text()
