"""Privacy measurement: distance correlation, the model-inversion attack, the [privacy] config."""
import numpy as np
import pytest

from fleet.config import ConfigError, FleetConfig, PrivacyConfig
from fleet.privacy import attack, distance_correlation, format_privacy, reconstruction_metrics, standardize


# ----------------------------------------------------------------------------- dCor
def test_dcor_independent_is_near_zero():
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(500, 1)), rng.normal(size=(500, 1))
    assert distance_correlation(x, z) < 0.12                       # V-statistic bias ~0.07 at n=500
    # the bias-corrected version is ~0 even in high dimension, where the V-statistic is not
    x, z = rng.normal(size=(500, 64)), rng.normal(size=(500, 8))
    assert abs(distance_correlation(x, z, bias_corrected=True)) < 0.02


def test_dcor_similarity_map_is_one_and_linear_map_is_high():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert distance_correlation(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-9)
    assert distance_correlation(x, 3.0 * x @ q + 1.0, bias_corrected=True) == pytest.approx(1.0, abs=1e-9)
    a = rng.normal(size=(20, 20))                                   # invertible, not a similarity
    assert distance_correlation(x, x @ a) > 0.8
    assert distance_correlation(x, x @ a) > distance_correlation(x, rng.normal(size=(400, 20))) + 0.3


def test_dcor_sees_nonlinear_dependence_pearson_misses():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(500, 1))
    z = x ** 2
    assert abs(np.corrcoef(x[:, 0], z[:, 0])[0, 1]) < 0.15
    assert distance_correlation(x, z) > 0.4
    assert distance_correlation(x, z, bias_corrected=True) > 0.15


def test_dcor_subsamples_seeded_and_validates():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 4))
    z = x[:, :2] + 0.1 * rng.normal(size=(1500, 2))
    a, b = distance_correlation(x, z, max_samples=300, seed=5), distance_correlation(x, z, max_samples=300, seed=5)
    assert a == b and a != distance_correlation(x, z, max_samples=300, seed=6)
    with pytest.raises(ValueError, match="rows"):
        distance_correlation(x, z[:10])


# ----------------------------------------------------------------------------- attack
def _digits():
    from edge_client.data import load_dataset

    return np.array(load_dataset("digits").x)


def _run(z: np.ndarray, x: np.ndarray):
    cfg = PrivacyConfig(epochs=30, hidden=256, seed=0)
    z = standardize(z)
    return attack(x[:600], z[:600], {"v1": (x[600:1200], z[600:1200]), "v2": (x[1200:], z[1200:])}, cfg,
                  progress=False)


def test_attack_inverts_an_invertible_linear_encoder():
    x = _digits()
    w = np.random.default_rng(0).normal(size=(64, 64))
    res = _run(x.reshape(len(x), -1) @ w, x)
    for v in res.victims:
        assert v["attack"]["mse"] < 0.25 * v["mean_image"]["mse"], v      # ~0.006 vs ~0.075 measured
        assert v["attack"]["psnr"] > v["mean_image"]["psnr"] + 6
        assert v["attack"]["ssim"] > 0.9 > v["mean_image"]["ssim"]
    assert res.recon["v1"].shape == (600, 1, 8, 8)


def test_attack_on_independent_noise_does_not_beat_the_mean_image():
    x = _digits()
    res = _run(np.random.default_rng(1).normal(size=(len(x), 16)), x)
    for v in res.victims:
        assert v["attack"]["mse"] > 0.95 * v["mean_image"]["mse"], v      # overfits: ~0.088 vs 0.075
        assert v["attack"]["psnr"] < v["mean_image"]["psnr"] + 0.3


def test_batched_ssim_is_skimages_ssim():
    from skimage.metrics import structural_similarity

    from fleet.privacy.metrics import ssim_batch

    rng = np.random.default_rng(0)
    for shape, win in (((6, 1, 28, 28), 7), ((4, 3, 12, 16), 7), ((5, 1, 8, 8), 7), ((3, 1, 5, 5), 5)):
        x = rng.uniform(size=shape)
        y = np.clip(x + 0.2 * rng.normal(size=shape), 0, 1)
        ref = [structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=win) for a, b in zip(x, y)]
        assert ssim_batch(x, y, win) == pytest.approx(ref, abs=1e-12)


def test_reconstruction_metrics_known_values():
    x = np.full((2, 1, 8, 8), 0.5)
    m = reconstruction_metrics(x, x + 0.1)
    assert m["mse"] == pytest.approx(0.01) and m["psnr"] == pytest.approx(20.0) and m["n"] == 2
    assert reconstruction_metrics(x, x)["ssim"] == pytest.approx(1.0)


def test_format_privacy_table():
    x = _digits()[:300]
    res = attack(x[:100], standardize(x[:100].reshape(100, -1)), {"client-001": (x[100:], standardize(
        x[100:].reshape(200, -1)))}, PrivacyConfig(epochs=2, hidden=32), progress=False)
    row = res.victims[0] | {"dcor": 0.5}
    priv = {"dcor": 0.5, "attacker": "mlp", "leaked_client": "client-000", "leaked_pairs": 100,
            "attack": row["attack"], "mean_image": row["mean_image"], "own_decoder": None,
            "leaked_client_held_out": None, "victims": [row]}
    text = format_privacy(priv)
    assert "mean-image guess" in text and "client-001" in text and "0.500" in text
    assert format_privacy({"skipped": "why"}) == "privacy: skipped (why)"


# ----------------------------------------------------------------------------- config
def _cfg(**privacy) -> FleetConfig:
    return FleetConfig.from_dict({"fleet": {"dataset": "digits", "num_clients": 3},
                                  "edge": {"model": {"latent_dim": 8}}, "privacy": privacy})


def test_privacy_config_defaults_round_trip_and_errors():
    assert _cfg().privacy.enabled is False
    fleet = _cfg(enabled=True, leaked_fraction=0.25, epochs=5, seed=3)
    assert FleetConfig.from_dict(fleet.to_dict()) == fleet
    for bad, match in [({"leaked_fraction": 0}, "privacy.leaked_fraction: got 0.0"),
                       ({"leaked_fraction": 1.5}, r"privacy.leaked_fraction: got 1.5, must be in \(0, 1\]"),
                       ({"epochs": 0}, "privacy.epochs: got 0"),
                       ({"enabled": "yes"}, "privacy.enabled: got 'yes'"),
                       ({"leaked_client": 3}, r"privacy.leaked_client: got 3, must be in \[0, 2\]"),
                       ({"dcor_samples": 1}, "privacy.dcor_samples"),
                       ({"leak": 1}, "privacy.leak: unknown key")]:
        with pytest.raises(ConfigError, match=match):
            _cfg(**bad)


def test_cli_privacy_flag_enables_the_phase(tmp_path):
    import argparse

    from fleet.cli.fleet_commands import load_fleet_config, register

    cfg = tmp_path / "f.toml"
    cfg.write_text('[fleet]\ndataset = "digits"\nnum_clients = 2\n[edge.model]\nlatent_dim = 8\n')
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert load_fleet_config(parser.parse_args(["fleet", "--config", str(cfg), "--privacy"])).privacy.enabled
    assert not load_fleet_config(parser.parse_args(["fleet", "--config", str(cfg)])).privacy.enabled


# ----------------------------------------------------------------------------- the fleet phase
def test_local_fleet_privacy_phase_reads_the_store(tmp_path):
    """A small in-process digital fleet: the phase pairs stored wire latents with the clients'
    training images, reports every victim against both baselines and writes table + PNG."""
    import json

    from fleet.flower.simulation import run_fleet
    from server.store import LatentStore

    fleet = FleetConfig.from_dict({
        "fleet": {"name": "priv", "dataset": "digits", "num_clients": 3, "digital": True, "backend": "local"},
        "edge": {"model": {"latent_dim": 16}, "training": {"epochs": 3, "batch_size": 16, "lr": 0.03}},
        "classifier": {"hidden": [32], "epochs": 5},
        "privacy": {"enabled": True, "leaked_client": 1, "leaked_fraction": 0.5, "epochs": 20, "hidden": 128,
                    "attack_epochs": 3, "public_images": 300},
    })
    priv = run_fleet(fleet, tmp_path)["privacy"]
    assert priv["leaked_client"] == "client-001" and [v["client_id"] for v in priv["victims"]] == \
        ["client-000", "client-002"]
    with LatentStore(tmp_path / "server", readonly=True) as store:
        rows = {c: store.count(c) for c in ("client-000", "client-001", "client-002")}
    assert priv["leaked_pairs"] == round(0.5 * rows["client-001"])
    assert [v["n"] for v in priv["victims"]] == [rows["client-000"], rows["client-002"]]
    # digital encoders from a shared init: the latents reveal the images, the attack beats the mean
    assert 0.5 < priv["dcor"] <= 1.0
    assert priv["attack"]["mse"] < priv["mean_image"]["mse"]
    assert priv["own_decoder"]["mse"] < priv["mean_image"]["mse"]
    assert priv["leaked_client_held_out"]["n"] == rows["client-001"] - priv["leaked_pairs"]
    assert "mean-image guess" in (tmp_path / "table.txt").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["privacy"]["dcor"] == pytest.approx(priv["dcor"])
    assert (tmp_path / "privacy_reconstructions.png").stat().st_size > 3000
    # the server-side suite: no anchors and no pretrained weights here, so FORA on a borrowed public set
    sa = json.loads((tmp_path / "report.json").read_text())["privacy"]["server_attack"]
    assert sa["attack"] == "fora" and {"psnr", "ssim", "reid", "gain_db", "rows"} <= set(sa)
    assert 5 < sa["psnr"] < 40 and 0 <= sa["ssim"] <= 1 and 0 <= sa["reid"] <= 1 and abs(sa["gain_db"]) < 20
    assert "borrowed" not in sa and "public slice" in sa["public_set"]
    assert 0 < sa["scored_images"] < rows["client-000"] + rows["client-002"]     # public-slice rows not scored
    kinds = {r["attack"]: r["kind"] for r in sa["rows"]}
    assert kinds["class_mean"] == "baseline" and kinds["leaked_pairs"] == "leaked_pairs"
    assert "privacy: strongest server attack (no leak) fora" in (tmp_path / "table.txt").read_text()
