"""analog.energy.model: hand-computed energies of a tiny known network, the HERMES calibration, the
component vs lumped relation and the digital devices."""
from __future__ import annotations

import pytest
import torch

import analog
from analog.energy import counting
from analog.energy.model import (EDGE_NPU, MCU, AnalogCosts, Band, analog_cost, digital_cost, per_mac_and_mvm,
                                 phase_costs)
from analog.periphery import IOConfig, UpdateConfig

FWD = IOConfig(inp_res=7, out_res=9, out_bound=1e6, bound_management="none")
BWD = IOConfig(inp_res=5, out_res=8, out_bound=1e6, bound_management="none")


def _tiny_counts() -> dict:
    """One 2x3 layer, batch 4, BL 5 (the counts tests/analog/test_energy_counters.py checks)."""
    cfg = analog.TileConfig(device=analog.devices.SoftBounds(), forward=FWD, backward=BWD,
                            update=UpdateConfig(desired_bl=5, bl_management=False))
    layer = analog.AnalogLinear(3, 2, bias=False, config=cfg, seed=3)
    x = torch.randn(4, 3, requires_grad=True)
    opt = analog.AnalogOptimizer(layer.parameters(), lr=0.1)
    with counting() as events:
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()
    return events.totals()


def test_hand_computed_energies_of_a_tiny_layer() -> None:
    c = _tiny_counts()
    costs = AnalogCosts()
    lumped = analog_cost(c, costs, "lumped")
    assert lumped["energy_j"]["mvm"].typical == pytest.approx(48 * 0.205e-12)          # 24 + 24 MACs
    comp = analog_cost(c, costs, "component")["energy_j"]["mvm"].typical
    dac = (12 * 7 + 8 * 5) * 3.5e-15                              # bit-serial inputs: b 1-bit conversions
    adc = 8 * 1.67e-12 * 2 + 12 * 1.67e-12                        # 9-bit ADC: twice an 8-bit one
    assert comp == pytest.approx(dac + adc + 48 * 10e-15)
    update = analog_cost(c, costs)["energy_j"]["update"].typical
    assert update == pytest.approx(c.get("pulses_update", 0.0) * 1e-12 + 4 * 5 * (3 + 2) * 3.5e-15)
    assert analog_cost(c, costs)["latency_s"]["mvm"].typical == pytest.approx(8 * 133e-9)
    assert analog_cost(c, costs)["latency_s"]["update"].typical == pytest.approx(20 * 100e-9)
    mcu = digital_cost(c, MCU)
    assert mcu["macs"] == 24 + 24 + 24                             # forward, backward, weight gradient
    ops = c["dig_act"] + c["dig_nm"]
    assert mcu["total_j"].typical == pytest.approx(72 * 0.55e-9 + ops * 0.055e-9)    # built before counting: nothing programmed


def test_hermes_lumped_lands_near_its_published_figures() -> None:
    """A 256x256 tile at 8-bit in/out, configured as HERMES: ~0.2 pJ per MAC and ~133 ns per MVM."""
    tile = analog.AnalogTile(256, 256, analog.TileConfig(forward=IOConfig(inp_res=8, out_res=8)), seed=0)
    with counting() as events, torch.no_grad():
        tile.forward_mvm(torch.randn(32, 256))
    per_mac, per_mvm = per_mac_and_mvm(events.totals(), AnalogCosts(), "lumped")
    assert 0.1e-12 <= per_mac.typical <= 0.4e-12
    assert 66e-9 <= per_mvm.typical <= 266e-9
    comp_mac, _ = per_mac_and_mvm(events.totals(), AnalogCosts(), "component")
    # converters and cell reads alone stay below the whole measured core (docs/energy.md: the gap)
    assert comp_mac.max < per_mac.typical and comp_mac.typical > 0


def test_adc_scales_as_two_to_the_bits() -> None:
    costs = AnalogCosts()
    assert costs.adc(10).typical == pytest.approx(4 * costs.adc(8).typical)
    assert costs.adc(6).typical == pytest.approx(costs.adc(8).typical / 4)
    assert costs.dac(7).typical == pytest.approx(7 * 3.5e-15)


def test_phase_costs_and_bands_are_ordered() -> None:
    with counting() as events:
        layer = analog.AnalogLinear(8, 4, config=analog.TileConfig(), seed=1)
        with events.phase("encode"), torch.no_grad():
            layer(torch.randn(16, 8))
    out = phase_costs(events.counts())
    assert set(out) == {"train", "encode"}                          # construction programs under "train"
    for phase in out.values():
        for dev in ("analog", "mcu", "edge_npu"):
            total = phase[dev]["total_j"]
            assert total.min <= total.typical <= total.max
    assert out["encode"]["mcu"]["total_j"].typical > out["encode"]["edge_npu"]["total_j"].typical
    assert EDGE_NPU.mac.typical < MCU.mac.typical


def test_band_validation() -> None:
    with pytest.raises(ValueError, match="band"):
        Band(2.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="band"):
        Band(-1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="mode"):
        analog_cost({}, AnalogCosts(), "exact")
    assert (Band(1, 2, 3) * 2 + Band.of(1)).to_dict() == {"min": 3, "typical": 5, "max": 7}
