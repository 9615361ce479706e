"""The edge defense in the fleet report: one block from the clients' summaries, one line in the table."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edge_client.config import DefenseConfig
from edge_client.defense import epsilon_per_row, release_report
from edge_client.summary import DefenseReport
from fleet.run.phases import defense_summary
from fleet.run.report import format_defense


def _upload(seed: int, defense: DefenseConfig) -> SimpleNamespace:
    """What defense_summary reads of a client's reply: its defense report."""
    z = np.random.default_rng(seed).normal(0, 2, size=(200, 16)).astype(np.float32)
    return SimpleNamespace(client_id=f"client-{seed:03d}", defense=DefenseReport(
        **release_report(z, defense).to_dict(), nopeek_weight=defense.nopeek_weight, label_weight=defense.label_weight,
        prototype_weight=defense.prototype_weight))


def test_defense_block_and_table_line():
    assert defense_summary([SimpleNamespace(client_id="client-000", defense=None)]) is None   # no defense: no block
    d = DefenseConfig(noise_multiplier=0.5, clip_norm=8.0, label_weight=2.0)
    block = defense_summary([_upload(s, d) for s in range(3)])
    assert block["clients"] == 3 and block["epsilon"] == epsilon_per_row(0.5) and block["noise_std"] == 4.0
    assert 0.2 < block["clipped_share"] < 0.8
    line = format_defense(block)
    assert "\n" not in line and "noise_multiplier 0.5, clip_norm 8" in line and "label_weight 2" in line
    assert f"epsilon {epsilon_per_row(0.5):.3g} per released row (delta 1e-05, replace-one" in line
    clip_only = defense_summary([_upload(0, DefenseConfig(clip_norm=8.0))])
    assert clip_only["epsilon"] is None and "no epsilon (no noise)" in format_defense(clip_only)
    assert "prototype_weight" not in line                                 # said only when it is on
    proto = format_defense(defense_summary([_upload(0, DefenseConfig(prototype_weight=20.0))]))
    assert "label_weight 0, prototype_weight 20; no epsilon" in proto


def test_private_preset_is_the_quickstart_plus_the_documented_defense():
    from pathlib import Path

    from fleet.config import FleetConfig

    root = Path(__file__).resolve().parents[2]
    private = FleetConfig.from_toml(root / "configs" / "private.toml").to_dict()
    quick = FleetConfig.from_toml(root / "configs" / "quickstart.toml").to_dict()
    assert private["edge"].pop("defense") == {"noise_multiplier": 0.07, "clip_norm": 10.0, "nopeek_weight": 0.0,
                                              "label_weight": 0.0, "prototype_weight": 30.0, "prototype_radius": 10.0}
    # the prototype pull needs the encoder to move: 30 local epochs at lr 0.05 instead of 5 at 0.002
    p_train, q_train = private["edge"]["training"], quick["edge"]["training"]
    assert (p_train.pop("epochs"), p_train.pop("lr")) == (30, 0.05)
    assert (q_train.pop("epochs"), q_train.pop("lr")) == (5, 0.002)
    assert private["fleet"].pop("name") == "private" and quick["fleet"].pop("name") == "quickstart"
    assert private == quick
