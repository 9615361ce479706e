"""End to end: a 3-client fleet on `digits` through Flower's simulation engine (Ray), and FedAvg.

One Ray start-up per test (~10-20 s on 2 cores); the latent service runs as a child process on a
free loopback port and must be gone (by pid) when the run returns.
"""
import json
import os

import numpy as np
import pytest

from fleet.config import FleetConfig

pytestmark = pytest.mark.slow


def _digits_fleet(**fleet_overrides) -> FleetConfig:
    data = {
        "fleet": {"name": "e2e", "dataset": "digits", "num_clients": 3, "seed": 0, "backend": "ray",
                  "cpus": 2, **fleet_overrides},
        "analog": {"device": {"type": "ReRAMSoftBounds"}, "algorithm": {"type": "TikiTaka"},
                   "forward": {"out_noise": 0.02}},
        "edge": {"model": {"latent_dim": 16},
                 "wire": {"bits": 8},
                 "training": {"epochs": 5, "batch_size": 8, "lr": 0.03}},
        "classifier": {"hidden": [64], "epochs": 20, "lr": 0.05},
        "fedavg": {"rounds": 2, "local_epochs": 2, "lr": 0.1, "batch_size": 16, "analog": False},
    }
    return FleetConfig.from_dict(data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_latent_fleet_on_digits_end_to_end(tmp_path):
    from server.store import LatentStore

    fleet = _digits_fleet(mode="latent")      # analog tiles on both sides
    from fleet.flower.simulation import run_fleet

    report = run_fleet(fleet, tmp_path)
    lat = report["latent"]

    # accuracy: honest per-client (own encoder, own held-out split), well above 10% chance
    assert lat["accuracy"] > 0.35, lat["accuracy"]          # ~55% measured; chance is 10%
    assert len(lat["clients"]) == 3 and all(c["accuracy"] > 0.2 for c in lat["clients"])
    assert lat["n_test"] == sum(c["n_test"] for c in lat["clients"]) > 300

    # the store holds exactly the rows the clients sent, per client, with latent_dim columns
    store = LatentStore(tmp_path / "server")
    z, y, ids = store.latents()
    assert z.shape == (sum(c["rows"] for c in lat["clients"]), 16)
    for c in lat["clients"]:
        assert store.count(c["client_id"]) == c["rows"] == c["stored_rows"]
    assert lat["store_matches"] and lat["rows_stored"] == lat["rows_sent"] == len(y)
    assert np.isfinite(z).all() and set(np.unique(y)) <= set(range(10))

    # no image-sized tensor crossed the wire: payload = rows * (latent_dim * bits / 8 + 4-byte label)
    for c in lat["clients"]:
        assert c["payload_bytes"] == c["rows"] * (16 * 8 // 8 + 4)
        framing = c["wire_bytes"] - c["payload_bytes"]
        assert 0 <= framing < 256, framing                    # header + chunk framing only
        assert c["wire_bytes"] / c["rows"] < 0.5 * c["pixels"]  # far below one 8x8 image per sample

    # the child service was stopped by pid; the report files exist and are valid
    assert lat["server_mode"] == "subprocess" and not _pid_alive(lat["server_pid"])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["latent"]["rows_sent"] == lat["rows_sent"]
    assert "client-002" in (tmp_path / "table.txt").read_text()
    assert FleetConfig.from_toml(tmp_path / "config.toml") == fleet
    assert (tmp_path / "accuracy_per_client.png").stat().st_size > 1000
    assert not (tmp_path / "plot_error.txt").exists()


def test_fedavg_two_clients_two_rounds(tmp_path):
    from fleet.flower.simulation import run_fleet

    fleet = _digits_fleet(mode="fedavg", num_clients=2, digital=True)
    report = run_fleet(fleet, tmp_path)
    fa = report["fedavg"]
    assert fa["rounds"] == 2 and len(fa["curve"]) == 2 and len(fa["clients"]) == 2
    assert fa["accuracy"] > 0.5, fa["accuracy"]
    # bytes, both directions, all rounds: 64*64+64 + 64*10+10 float32 parameters per model copy
    model_bytes = 4 * (64 * 64 + 64 + 64 * 10 + 10)
    assert fa["params"] * 4 == model_bytes
    up_copies, down_copies = 2 * 2, 2 * 2 * 2          # rounds x clients; down = train + evaluate
    assert model_bytes * up_copies <= fa["bytes_up"] < 1.05 * model_bytes * up_copies
    assert model_bytes * down_copies <= fa["bytes_down"] < 1.05 * model_bytes * down_copies
    assert fa["curve"][-1]["bytes_total"] == fa["bytes_up"] + fa["bytes_down"]
    assert (tmp_path / "accuracy_vs_bytes.png").stat().st_size > 1000
    assert not (tmp_path / "plot_error.txt").exists()
