"""fleet/energy/radio.py and fleet/energy/costs.py: radio costs, the [energy] config, the per-client energy section
of report.json, its table and its PNG."""
from __future__ import annotations

import pytest
import torch

import analog
from analog.energy import counting
from common.validation import ConfigError
from fleet.config import RADIO_NAMES, FleetConfig
from fleet.energy.costs import energy_report, format_energy, plot_energy
from fleet.energy.radio import RADIOS, radio


def test_radio_costs_per_bit_connection_and_airtime() -> None:
    ble = radio("ble")
    cost = ble.cost(1e6, connections=1)
    assert cost["energy_j"].typical == pytest.approx(1e6 * 30e-9 + 30e-6)
    assert cost["latency_s"].typical == pytest.approx(1e6 / 0.5e6)
    assert cost["energy_j"].min <= cost["energy_j"].typical <= cost["energy_j"].max
    lora = radio("lora_sf12")
    assert lora.cost(293.0, 0)["latency_s"].typical == pytest.approx(100.0)   # 1 s of airtime at 1% duty
    wifi, ieee = radio("wifi"), radio("802.15.4")
    assert wifi.cost(0.0, 1)["energy_j"].typical >= 10e-3                     # association dominates small sends
    assert ieee.j_per_bit.min >= 300e-9 and ieee.j_per_bit.max <= 420e-9
    assert set(RADIOS) == set(RADIO_NAMES)
    with pytest.raises(ValueError, match="energy.radio: got 'zigbee'"):
        radio("zigbee")


def test_energy_config_validated_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="energy.radio: got 'zigbee', must be one of ble"):
        FleetConfig.from_dict({"fleet": {}, "energy": {"radio": "zigbee"}})
    with pytest.raises(ConfigError, match="energy.mode"):
        FleetConfig.from_dict({"fleet": {}, "energy": {"mode": "exact"}})
    with pytest.raises(ConfigError, match="energy"):
        FleetConfig.from_dict({"fleet": {}, "energy": {"radios": "ble"}})
    cfg = FleetConfig.from_dict({"fleet": {}, "energy": {"radio": "lora_sf7"}})
    assert FleetConfig.from_dict(cfg.to_dict()).energy.radio == "lora_sf7"
    assert FleetConfig().energy.radio == "ble" and FleetConfig().energy.enabled


def _client(i: int, wire_bytes: int) -> dict:
    with counting() as events:
        with events.phase("program"):
            layer = analog.AnalogLinear(16, 4, config=analog.TileConfig(), seed=i)
            events.name_tiles(layer)
        with events.phase("train"):
            opt = analog.AnalogOptimizer(layer.parameters(), lr=0.01)
            for _ in range(3):
                opt.zero_grad()
                layer(torch.randn(8, 16)).pow(2).sum().backward()
                opt.step()
        with events.phase("encode"), torch.no_grad():
            layer(torch.randn(20, 16))
    return {"client_id": f"client-{i:03d}", "partition_id": i, "n_train": 24, "wire_bytes": wire_bytes,
            "init_bytes_down": 0, "pixels": 16, "labels": [3, 3, 3, 3], "events": events.to_dict()}


def test_energy_report_per_client_bands_table_and_png(tmp_path) -> None:
    fleet = FleetConfig.from_dict({"fleet": {"num_clients": 2}, "classifier": {"hidden": [8]}})
    result = {"latent": {"clients": [_client(0, 1000), _client(1, 4000)]}}
    energy = energy_report(fleet, result)
    assert [c["client_id"] for c in energy["clients"]] == ["client-000", "client-001"]
    for c in energy["clients"]:
        for key in ("compute_j", "radio_j", "total_j", "latency_s"):
            assert c[key].min <= c[key].typical <= c[key].max
        assert c["total_j"].typical == pytest.approx(c["compute_j"].typical + c["radio_j"].typical)
        assert set(c["phases"]) == {"program", "train", "encode", "upload", "download"}
        assert c["phases"]["download"]["energy_j"].typical == 0.0
        assert c["phases"]["train"]["energy_j"].typical > c["phases"]["encode"]["energy_j"].typical > 0
        assert c["digital"]["mcu"]["compute_j"].typical > c["digital"]["edge_npu"]["compute_j"].typical
    a, b = energy["clients"]
    assert b["radio_j"].typical - a["radio_j"].typical == pytest.approx(3000 * 8 * 30e-9)
    fed = energy["fedavg_per_round"]
    assert fed["params"] == 16 * 8 + 8 * 4 + 8 + 4 and fed["samples"] == 24
    assert energy["crossover"]["fedavg_rounds_costing_the_same"] > 0
    table = format_energy(energy)
    assert "radio ble" in table and "client-001" in table and "FedAvg" in table
    path = plot_energy(energy, tmp_path, "two clients, test")
    assert path is not None and path.stat().st_size > 10_000
