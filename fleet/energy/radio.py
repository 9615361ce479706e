"""Radio links of an edge device: energy per bit, a fixed cost per connection, airtime from the data rate.

Why in fleet/ and not analog/: the radio is how a fleet's devices talk, not the physics of a tile;
the fleet's report and sweep are its only users, and analog/ must stay free of anything but tiles.
A band is (min, typical, max). Energy per bit covers the radio's transmit (or receive) power over the
link's effective (application) throughput, so protocol overhead is inside it; a connection's fixed
cost covers waking, advertising/association and connection set-up. Receiving is priced like sending
(radios of this class draw about the same current in RX as in TX at 0 dBm). Latency is airtime plus,
for LoRa, the duty-cycle wait the regulation imposes (1% in the EU 868 MHz band).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analog.energy.model import Band
from common.validation import ConfigError


@dataclass(frozen=True)
class Radio:
    """One link technology; see RADIOS for the figures and their sources."""

    name: str
    j_per_bit: Band
    connect_j: Band
    bits_per_s: Band            # effective throughput (the slow end gives the longest airtime)
    duty_cycle: float = 1.0     # fraction of time the device may transmit (LoRa: 1%)
    source: str = ""

    def cost(self, bits: float, connections: int = 1) -> dict[str, Band]:
        """Energy (J) and latency (s) of moving ``bits`` over ``connections`` connections."""
        energy = self.j_per_bit * bits + self.connect_j * connections
        r = self.bits_per_s
        air = Band(bits / r.max, bits / r.typical, bits / r.min)
        return {"energy_j": energy, "latency_s": air * (1.0 / self.duty_cycle)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "j_per_bit": self.j_per_bit.to_dict(), "connect_j": self.connect_j.to_dict(),
                "bits_per_s": self.bits_per_s.to_dict(), "duty_cycle": self.duty_cycle, "source": self.source}


#: BLE: ~14-45 nJ/bit. Nordic nRF52840 product specification: TX at 0 dBm 4.8 mA and RX 4.6 mA at 3 V
#: (~14 mW) over the 1 Mb/s PHY = 14 nJ/bit (min); at the ~0.3-0.8 Mb/s a connection really carries
#: (connection intervals, headers, acknowledgements) 17-45 nJ/bit (typical 30, max 45). Connection:
#: advertising + connection set-up, tens of uJ (Siekkinen et al., "How low energy is Bluetooth Low
#: Energy?", IEEE WCNC Workshops 2012, measured per-connection energies in this range): 10-100 uJ.
BLE = Radio("ble", Band(14e-9, 30e-9, 45e-9), Band(10e-6, 30e-6, 100e-6), Band(0.3e6, 0.5e6, 0.8e6),
            source="nRF52840 product specification; Siekkinen et al., IEEE WCNCW 2012")
#: IEEE 802.15.4 (2.4 GHz O-QPSK, 250 kb/s): TI CC2420 datasheet, TX 17.4 mA at 0 dBm, RX 18.8 mA,
#: at 3 V ~55 mW over 250 kb/s = 220 nJ/bit raw; with MAC overhead and ~130-180 kb/s effective,
#: ~300-420 nJ/bit. Joining/association: ~0.1-1 mJ (a few radio-on milliseconds to a second of listening).
IEEE_802_15_4 = Radio("802.15.4", Band(300e-9, 360e-9, 420e-9), Band(0.1e-3, 0.3e-3, 1e-3),
                      Band(130e3, 150e3, 180e3), source="TI CC2420 datasheet")
#: Wi-Fi (802.11n, a low-power SoC such as the ESP32: ~0.5-0.8 W in TX at 1-10+ Mb/s effective): 0.1-2
#: uJ/bit (typical 0.5); association, authentication and DHCP keep the radio on for ~0.1-1 s at ~0.1-0.3 W:
#: 10-100 mJ per connection (Tozlu et al., "Wi-Fi enabled sensors for Internet of Things: a practical
#: approach", IEEE Commun. Mag. 50(6), 2012; Espressif ESP32 datasheet for the currents).
WIFI = Radio("wifi", Band(0.1e-6, 0.5e-6, 2e-6), Band(10e-3, 30e-3, 100e-3), Band(1e6, 5e6, 20e6),
             source="ESP32 datasheet; Tozlu et al., IEEE Commun. Mag. 2012")
#: LoRa, Semtech SX1276 datasheet: TX at +14 dBm ~44 mA at 3.3 V (~0.15 W; +20 dBm 120 mA = 0.4 W max,
#: +10 dBm ~ 0.1 W min); SF7/125 kHz carries 5.47 kb/s -> 18-73 uJ/bit (typical 27); SF12 293 b/s ->
#: 0.34-1.4 mJ/bit (typical 0.5). Joining (OTAA join request + accept): one short uplink and downlink,
#: ~0.1-1 J at SF12, ~5-50 mJ at SF7. EU868 duty cycle 1% (ETSI EN 300 220): the wait between uplinks
#: multiplies the airtime by 100. Payloads are at most 222 bytes (SF7) or 51 bytes (SF12) per frame.
LORA_SF7 = Radio("lora_sf7", Band(18e-6, 27e-6, 73e-6), Band(5e-3, 15e-3, 50e-3), Band(5.47e3, 5.47e3, 5.47e3),
                 duty_cycle=0.01, source="Semtech SX1276 datasheet; ETSI EN 300 220 (1% duty cycle)")
LORA_SF12 = Radio("lora_sf12", Band(0.34e-3, 0.5e-3, 1.4e-3), Band(0.1, 0.3, 1.0), Band(293.0, 293.0, 293.0),
                  duty_cycle=0.01, source="Semtech SX1276 datasheet; ETSI EN 300 220 (1% duty cycle)")

RADIOS: dict[str, Radio] = {r.name: r for r in (BLE, IEEE_802_15_4, WIFI, LORA_SF7, LORA_SF12)}


def radio(name: str) -> Radio:
    """The radio called ``name``; a one-line error names the choices."""
    try:
        return RADIOS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"energy.radio: got {name!r}, must be one of {', '.join(RADIOS)}") from None
