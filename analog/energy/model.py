"""Energy and latency from event counts (analog.energy.counters): per-event figures as min / typical /
max bands, each with its source, for analog tiles and for the same work on digital edge devices.

Two ways to price the analog MVMs, which must agree within their bands (tests/analog/test_energy_model.py):
- ``component``: every DAC and ADC conversion at its bit width plus every cell read;
- ``lumped``: a whole-core energy per multiply-accumulate (HERMES: converters, drivers, local
  digital and control included).
Updates, transfers and programming are priced per device pulse in both modes; digital work per op.

What is not counted (docs/energy.md): leakage and idle power, clocking and control beyond what the
lumped figure contains, data movement between tiles and to memory (except in the digital devices'
figures), the host that runs the loop, and anything the simulator does not model (e.g. the
verify reads of a program-and-verify loop are folded into ``program_pulses_per_device``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from analog.energy.counters import totals

MODES = ("component", "lumped")
#: the bit width a converter switched off in the simulation ('off') is priced at
DEFAULT_BITS = 8


@dataclass(frozen=True)
class Band:
    """A non-negative quantity as (min, typical, max); sums and products keep the ordering."""

    min: float
    typical: float
    max: float

    def __post_init__(self) -> None:
        values = (self.min, self.typical, self.max)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not self.min <= self.typical <= self.max:
            raise ValueError(f"band: got {values}, must be finite, >= 0 and min <= typical <= max")

    @classmethod
    def of(cls, value: float) -> "Band":
        return cls(value, value, value)

    def __add__(self, other: "Band") -> "Band":
        return Band(self.min + other.min, self.typical + other.typical, self.max + other.max)

    def __mul__(self, k: "float | Band") -> "Band":
        if isinstance(k, Band):
            return Band(self.min * k.min, self.typical * k.typical, self.max * k.max)
        if k < 0:
            raise ValueError(f"k: got {k}, a band scales by a number >= 0")
        return Band(self.min * k, self.typical * k, self.max * k)

    __rmul__ = __mul__

    def to_dict(self) -> dict[str, float]:
        return {"min": self.min, "typical": self.typical, "max": self.max}

    def overlaps(self, other: "Band") -> bool:
        return self.min <= other.max and other.min <= self.max


ZERO = Band.of(0.0)


def band_sum(bands: list[Band]) -> Band:
    out = ZERO
    for b in bands:
        out = out + b
    return out


@dataclass(frozen=True)
class AnalogCosts:
    """Per-event energies (J) and times (s) of an analog in-memory core; the defaults are HERMES-like.

    mac_lumped: whole-core energy per MAC. IBM HERMES PCM core (Le Gallo et al., "A 64-core
      mixed-signal in-memory compute chip based on phase-change memory for deep neural network
      inference", Nat. Electron. 6, 680-693, 2023): 9.76 TOPS/W at 8-bit inputs/outputs, i.e.
      1/9.76e12 J per op x 2 ops per MAC = 0.205 pJ/MAC in its one-phase read mode (typical); its
      four-phase (high-precision) mode runs at 2.48 TOPS/W = 0.81 pJ/MAC (max); min 0.1 pJ/MAC (half the
      typical: our assumption for a later node). The single core (Khaddam-Aljameh et al., "HERMES-Core",
      IEEE JSSC 2022) measured 10.5 TOPS/W, inside the band.
    t_mvm: one input vector through a core: HERMES ~133 ns per 256x256 MVM (same paper; typical);
      band 100 ns to 1 us (slower ADCs / bit-serial inputs: ISAAC reads a crossbar in 100 ns per input
      bit, Shafiee et al., ISCA 2016).
    cell_read: one cell's read per MAC, <= 25 fJ (PCM/RRAM cells at ~0.1-0.2 V, uS conductances and
      ~100 ns reads; NeuroSim's array model, Peng et al., IEDM 2019 "DNN+NeuroSim V2.0"); band 1-25 fJ,
      typical 10 fJ.
    dac_bit: one input line per input bit, 1-bit DAC ~3.5 fJ (ISAAC: 4 mW for 8 x 128 1-bit DACs at
      1.28 GHz, i.e. ~3.9 fJ per conversion; Shafiee et al., ISCA 2016); a b-bit input is b bit-serial
      1-bit conversions. Band 2-8 fJ (assumption: +-2x).
    adc_8bit: one 8-bit conversion ~1.67 pJ (ISAAC's 8-bit 1.28 GS/s SAR ADC, 2 mW per ADC: ~1.6 pJ);
      scaled by 2**(b - 8) for b bits (SAR energy roughly doubles per bit, Murmann's ADC survey).
      Band 0.8-3.3 pJ (assumption: +-2x).
    pulse: one update / programming pulse on one device, 0.2-8 pJ (DNN+NeuroSim's device parameters
      for RRAM/PCM write pulses; device-dependent), typical 1 pJ (assumption inside the band).
    t_pulse: one pulse slot of a parallel update: 10 ns .. 1 us, typical 100 ns (PCM SET/RESET pulses
      take ~50-100 ns; Gokmen & Vlasov, Front. Neurosci. 2016, assume ns-scale pulses for RPU arrays).
    program_pulses_per_device: iterations of program-and-verify per device when a weight is written
      (initial or pretrained weights): 1 (single shot) .. 30, typical 10 (assumption; HERMES programs
      with an iterative program-and-verify scheme). Each iteration costs a pulse plus a verify read
      (priced as one MVM time per row of 256 devices programmed in parallel).
    digital_op: one elementwise op on the core's digital side (activation, scaling, noise
      management, optimizer update): 0.23 pJ (int8 MAC) .. 9.6 pJ (fp32 MAC + one SRAM word),
      typical 4.6 pJ (fp32 MAC) -- Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm), the
      SRAM figure as tabulated by Han et al., ISCA 2016 (EIE): 5 pJ per 32-bit SRAM read.
    digital_mac: one MAC of digital accumulation (MixedPrecision's chi, TTv2's H): fp32 MAC 4.6 pJ
      typical, int8 MAC 0.23 pJ min, + a 32-bit SRAM read and write (14.6 pJ) max (Horowitz 2014).
    digital_rate: digital ops per second on the core (1-100 G/s, typical 10 G/s; assumption for a
      small on-chip SIMD unit).
    """

    mac_lumped: Band = Band(0.1e-12, 0.205e-12, 0.81e-12)
    t_mvm: Band = Band(100e-9, 133e-9, 1e-6)
    cell_read: Band = Band(1e-15, 10e-15, 25e-15)
    dac_bit: Band = Band(2e-15, 3.5e-15, 8e-15)
    adc_8bit: Band = Band(0.8e-12, 1.67e-12, 3.3e-12)
    pulse: Band = Band(0.2e-12, 1e-12, 8e-12)
    t_pulse: Band = Band(10e-9, 100e-9, 1e-6)
    program_pulses_per_device: Band = Band(1, 10, 30)
    digital_op: Band = Band(0.23e-12, 4.6e-12, 9.6e-12)
    digital_mac: Band = Band(0.23e-12, 4.6e-12, 14.6e-12)
    digital_rate: Band = Band(1e9, 10e9, 100e9)

    def adc(self, bits: int) -> Band:
        """One conversion of a b-bit ADC (0 = a converter off in the simulation: priced at 8 bits)."""
        return self.adc_8bit * 2.0 ** ((bits or DEFAULT_BITS) - 8)

    def dac(self, bits: int) -> Band:
        """One b-bit input as b bit-serial 1-bit conversions."""
        return self.dac_bit * float(bits or DEFAULT_BITS)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}


@dataclass(frozen=True)
class DigitalDevice:
    """A digital edge device doing the same work: energy and time per MAC (the MVMs, the weight
    gradients) and per elementwise op, and per weight written (weights loaded into memory)."""

    name: str
    mac: Band
    mac_rate: Band          # MAC/s (slow end = min of the band, so latency max = work / mac_rate.min)
    op: Band
    weight_write: Band
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mac_j": self.mac.to_dict(), "mac_per_s": self.mac_rate.to_dict(),
                "source": self.source}


#: A Cortex-M class MCU running int8 kernels: ~0.4-0.7 nJ per int8 MAC (e.g. a Cortex-M4/M7 at ~100-200 MHz
#: drawing ~20-60 mW while sustaining ~0.05-0.15 GMAC/s with CMSIS-NN; Lai, Suda & Chandra, "CMSIS-NN",
#: arXiv:1801.06601, 2018, give the throughput); elementwise ops at a tenth of a MAC's cycles; weights
#: written to SRAM at 5 pJ per 32-bit word (Horowitz 2014 via Han et al. 2016). Training in int8 on
#: an MCU is optimistic (fp32 training costs more): the band's max covers 2x.
MCU = DigitalDevice("mcu", mac=Band(0.4e-9, 0.55e-9, 1.4e-9), mac_rate=Band(0.05e9, 0.1e9, 0.15e9),
                    op=Band(0.04e-9, 0.055e-9, 0.14e-9), weight_write=Band(5e-12, 5e-12, 640e-12),
                    source="Cortex-M class MCU, CMSIS-NN int8 (Lai et al. 2018); 0.4-0.7 nJ/MAC")
#: An edge NPU: Google Coral Edge TPU, 4 TOPS at 2 W (0.5 W per TOPS, coral.ai datasheet) = 0.5 pJ/op =
#: 1 pJ per int8 MAC at full utilisation (typical); min 0.5 pJ/MAC (newer NPUs at ~4 TOPS/W), max
#: 4 pJ/MAC (25% utilisation on small layers; and an inference NPU cannot train: its training figures
#: price the same MACs as if it could); weights fetched from DRAM at 640 pJ per 32-bit word (max) or
#: held on chip at 5 pJ (min, typical; Horowitz 2014 via Han et al. 2016).
EDGE_NPU = DigitalDevice("edge_npu", mac=Band(0.5e-12, 1e-12, 4e-12), mac_rate=Band(0.5e12, 1e12, 2e12),
                         op=Band(0.5e-12, 1e-12, 4e-12), weight_write=Band(5e-12, 5e-12, 640e-12),
                         source="Google Coral Edge TPU, 4 TOPS at 2 W (coral.ai datasheet)")
DIGITAL_DEVICES = {d.name: d for d in (MCU, EDGE_NPU)}

_DIGITAL_OPS = ("dig_act", "dig_nm", "dig_opt", "dig_quant")


def _get(c: Mapping[str, float], key: str) -> float:
    return float(c.get(key, 0.0))


def _converters(c: Mapping[str, float], prefix: str) -> list[tuple[int, float]]:
    return [(int(k[len(prefix):]), v) for k, v in c.items() if k.startswith(prefix)]


def analog_cost(c: Mapping[str, float], costs: AnalogCosts = AnalogCosts(), mode: str = "lumped") -> dict[str, Any]:
    """Energy (J) and latency (s) bands of one phase's event totals ``c`` on analog tiles, split into
    mvm, update, transfer, program and digital. Latency adds the parts (one core, no overlap)."""
    if mode not in MODES:
        raise ValueError(f"mode: got {mode!r}, must be one of {', '.join(MODES)}")
    macs = sum(_get(c, k) for k in ("mac_fwd", "mac_bwd", "mac_transfer", "mac_retry"))
    vectors = sum(_get(c, k) for k in ("mvm_fwd", "mvm_bwd", "mvm_transfer", "bm_retry"))
    if mode == "lumped":
        mvm_e = costs.mac_lumped * macs
    else:
        mvm_e = band_sum([costs.dac(b) * n for b, n in _converters(c, "dac_b")]
                         + [costs.adc(b) * n for b, n in _converters(c, "adc_b")] + [costs.cell_read * macs])
    # the stochastic update drives every line for every slot (a 1-bit conversion each) and pulses the
    # coincidences; writes without trains (MixedPrecision, transfers) last as many pulses as the busiest device
    update_e = costs.pulse * _get(c, "pulses_update") + costs.dac_bit * _get(c, "update_line_slots")
    slots = _get(c, "update_slots") or _get(c, "write_steps_update")
    update_t = costs.t_pulse * slots
    transfer_e = costs.pulse * _get(c, "pulses_transfer")
    transfer_t = costs.t_pulse * _get(c, "write_steps_transfer")
    programmed = _get(c, "devices_programmed")
    program_e = costs.pulse * _get(c, "pulses_program") + (costs.pulse * costs.program_pulses_per_device) * programmed
    program_t = ((costs.t_pulse + costs.t_mvm) * costs.program_pulses_per_device) * (programmed / 256.0) \
        + costs.t_pulse * _get(c, "write_steps_program")
    ops = sum(_get(c, k) for k in _DIGITAL_OPS)
    digital_e = costs.digital_op * ops + costs.digital_mac * _get(c, "dig_mp_mac")
    rate = costs.digital_rate
    digital_t = Band((ops + _get(c, "dig_mp_mac")) / rate.max, (ops + _get(c, "dig_mp_mac")) / rate.typical,
                     (ops + _get(c, "dig_mp_mac")) / rate.min)
    energy = {"mvm": mvm_e, "update": update_e, "transfer": transfer_e, "program": program_e, "digital": digital_e}
    latency = {"mvm": costs.t_mvm * vectors, "update": update_t, "transfer": transfer_t, "program": program_t,
               "digital": digital_t}
    return {"energy_j": energy, "latency_s": latency, "total_j": band_sum(list(energy.values())),
            "total_s": band_sum(list(latency.values())), "macs": macs, "mvms": vectors}


def digital_cost(c: Mapping[str, float], device: DigitalDevice) -> dict[str, Any]:
    """The same work on a digital device: the MVMs' and the weight gradients' MACs (no transfers: a
    digital trainer has none), the elementwise ops, and the weights written once per device programmed."""
    macs = sum(_get(c, k) for k in ("mac_fwd", "mac_bwd", "mac_update"))
    ops = sum(_get(c, k) for k in _DIGITAL_OPS)
    energy = device.mac * macs + device.op * ops + device.weight_write * _get(c, "devices_programmed")
    r = device.mac_rate
    work = macs + 0.1 * ops
    latency = Band(work / r.max, work / r.typical, work / r.min)
    return {"total_j": energy, "total_s": latency, "macs": macs}


def phase_costs(counts: Mapping[str, Mapping[str, Mapping[str, float]]], costs: AnalogCosts = AnalogCosts(),
                mode: str = "lumped") -> dict[str, dict[str, Any]]:
    """{phase: {"analog": ..., "mcu": ..., "edge_npu": ...}} for EventCounter.counts() output."""
    phases = sorted({p for per_tile in counts.values() for p in per_tile})
    out: dict[str, dict[str, Any]] = {}
    for phase in phases:
        c = totals(counts, phase)     # type: ignore[arg-type]
        out[phase] = {"analog": analog_cost(c, costs, mode),
                      **{name: digital_cost(c, dev) for name, dev in DIGITAL_DEVICES.items()}}
    return out


def per_mac_and_mvm(c: Mapping[str, float], costs: AnalogCosts = AnalogCosts(), mode: str = "lumped") -> tuple[Band, Band]:
    """(energy per MAC, time per MVM vector) of the MVM work in ``c``: the two figures a chip reports."""
    r = analog_cost(c, costs, mode)
    macs, vectors = max(r["macs"], 1.0), max(r["mvms"], 1.0)
    return r["energy_j"]["mvm"] * (1.0 / macs), r["latency_s"]["mvm"] * (1.0 / vectors)
