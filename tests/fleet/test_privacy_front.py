"""`analog-edge privacy-front`: dotted-key defenses, seeds, marks, and its outputs (digits, digital)."""
import csv
import json

import pytest

from fleet.config import ConfigError, FleetConfig
from fleet.experiments.privacy_front import Defense, _summary, parse_value, run_front, with_key


def _fleet() -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "front", "dataset": "digits", "num_clients": 2, "digital": True, "backend": "local"},
        "edge": {"training": {"epochs": 2, "batch_size": 16, "lr": 0.03}, "model": {"latent_dim": 16}},
        "classifier": {"hidden": [32], "epochs": 5},
        "privacy": {"attack_epochs": 2, "epochs": 2, "hidden": 32, "public_images": 200},
    })


def test_defense_parsing_and_dotted_overrides():
    d = Defense.parse("edge.defense.noise_multiplier=0,0.5,1")
    assert d.key == "edge.defense.noise_multiplier" and d.values == (0, 0.5, 1)
    assert parse_value("true") is True and parse_value("pretrained+anchors") == "pretrained+anchors"
    fleet = with_key(with_key(_fleet(), "edge.defense.clip_norm", 2.0), "edge.defense.noise_multiplier", 0.5)
    assert fleet.edge_config.defense.noise_multiplier == 0.5 and fleet.edge_config.defense.clip_norm == 2.0
    assert with_key(_fleet(), "alignment", "none").alignment.label == "none"          # the compact form
    assert with_key(_fleet(), "alignment.conditioning", "adapter").alignment.label == "shared_init+adapter"
    assert Defense.parse("alignment=none,shared_init+adapter").values == ("none", "shared_init+adapter")
    with pytest.raises(ConfigError, match=r"--defense fleet.alignment='none': fleet.alignment: moved; the \[alignment\]"):
        with_key(_fleet(), "fleet.alignment", "none")
    for bad, match in (("edge.wire.bits", "must be SECTION.KEY"), ("bits=8", "must be SECTION.KEY"),
                       ("fleet.seed=1,2", "seeds are --seeds")):
        with pytest.raises(ConfigError, match=match):
            Defense.parse(bad)
    with pytest.raises(ConfigError, match=r"--defense edge.wire.bits=3: edge.wire.bits: got 3"):
        with_key(_fleet(), "edge.wire.bits", 3)
    with pytest.raises(ConfigError, match=r"--defense edge.bits=3: edge.bits: moved to \[edge.wire\] as bits"):
        with_key(_fleet(), "edge.bits", 3)


def test_points_average_their_seeds_with_the_spread():
    runs = [{"accuracy": 0.9, "gain_db": 5.0, "psnr": 18.0, "ssim": 0.8, "reid": 0.9, "attack": "a"},
            {"accuracy": 0.8, "gain_db": 3.0, "psnr": 16.0, "ssim": 0.7, "reid": 0.5, "attack": "b"},
            {"accuracy": 0.7, "gain_db": 4.0, "psnr": 17.0, "ssim": 0.6, "reid": 0.4, "attack": "b"}]
    s = _summary(runs)
    assert s["seeds"] == 3 and s["accuracy"] == pytest.approx(0.8) and s["gain_db_min"] == 3.0
    assert s["gain_db_max"] == 5.0 and s["attack"] == "b"


def test_front_runs_each_point_per_seed_once_and_draws_it(tmp_path):
    fleet = _fleet()
    res = run_front(fleet, [Defense.parse("edge.wire.bits=8,4")], [3], tmp_path)
    rows = {(r["curve"], r["value"]): r for r in res["rows"]}
    assert set(rows) == {("mark", "front (as given)"), ("edge.wire.bits", 8), ("edge.wire.bits", 4)}
    # the config as given is 8-bit: that point ran once, shared with the curve's 8
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["p00-s3", "p02-s3"]
    assert rows[("edge.wire.bits", 8)]["runs"] == rows[("mark", "front (as given)")]["runs"]
    for r in rows.values():
        assert r["seeds"] == 1 and r["accuracy_min"] <= r["accuracy"] <= r["accuracy_max"]
        assert r["attack"] == "fora" and r["gain_db_min"] <= r["gain_db"] <= r["gain_db_max"]
        assert 0 <= r["reid"] <= 1 and 0 <= r["ssim"] <= 1
    with (tmp_path / "front.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3
    assert "seeds 3" in json.loads((tmp_path / "front.json").read_text())["title"]
    assert "edge.wire.bits" in (tmp_path / "front_table.txt").read_text()
    assert (tmp_path / "front.png").stat().st_size > 5000


def test_cli_front_validates_before_running(tmp_path, capsys):
    from fleet.cli.entry import main

    cfg = tmp_path / "f.toml"
    cfg.write_text('[fleet]\ndataset = "digits"\nnum_clients = 2\n[edge.model]\nlatent_dim = 8\n')
    assert main(["privacy-front", "--config", str(cfg), "--defense", "edge.model.latent_dim=8,0",
                 "--out", str(tmp_path / "o")]) == 2
    assert "edge.model.latent_dim: got 0" in capsys.readouterr().err and not (tmp_path / "o").exists()
