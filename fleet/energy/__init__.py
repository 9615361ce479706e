"""What each edge device spends: energy and latency per phase (costs) over its radio link (radio)."""
from fleet.energy.costs import (
                                SWEEP_FIELDS,
                                as_json,
                                energy_report,
                                format_energy,
                                format_sweep_energy,
                                plot_energy,
                                plot_sweep_energy,
                                point_energy,
)
from fleet.energy.radio import RADIOS, Radio, radio

__all__ = ["RADIOS", "SWEEP_FIELDS", "Radio", "as_json", "energy_report", "format_energy", "format_sweep_energy",
           "plot_energy", "plot_sweep_energy", "point_energy", "radio"]
