"""Named presets are resolved by analog.presets.from_dict; TileConfig.from_dict takes explicit sections."""
import pytest

import analog
from analog import devices, presets


def test_preset_with_overrides_resolves_in_presets():
    cfg = presets.from_dict({"preset": "softbounds", "forward": {"out_noise": 0.01}, "seed": 3})
    assert cfg.device == devices.SoftBounds() and cfg.forward.out_noise == 0.01 and cfg.seed == 3
    assert cfg.backward == presets.tile_config("softbounds").backward          # untouched sections kept
    assert presets.from_dict({"device": {"type": "ECRAM"}}) == analog.TileConfig.from_dict({"device": {"type": "ECRAM"}})
    assert presets.from_dict(None) == analog.TileConfig()


def test_tile_config_from_dict_names_where_presets_go():
    with pytest.raises(ValueError, match=r"preset: got 'ecram'; named presets are resolved by analog.presets.from_dict"):
        analog.TileConfig.from_dict({"preset": "ecram"})
    with pytest.raises(ValueError, match="preset: got 'nope', must be one of"):
        presets.from_dict({"preset": "nope"})


def test_periphery_configs_are_one_set_of_classes():
    from analog import config, periphery

    assert config.IOConfig is periphery.IOConfig is analog.IOConfig
    assert config.UpdateConfig is periphery.UpdateConfig and config.MappingConfig is periphery.MappingConfig


def test_aihwkit_reram_sb_training_presets_by_name_from_toml():
    """The TTv2 / chopped TTv2 / AGAD presets mirror aihwkit's ReRAM-SB compound presets and load by
    name, as a tile preset or as an algorithm preset with overrides (what a TOML config writes)."""
    import tomllib

    from analog import algorithms
    from analog.algorithms import presets as algo_presets

    agad = presets.tile_config("reram-sb-agad")
    assert agad.device == devices.ReRAMSoftBounds() and isinstance(agad.algorithm, algorithms.AGAD)
    a = agad.algorithm
    assert (a.chop_probability, a.tail_weightening, a.fast_lr, a.auto_scale, a.auto_granularity, a.gamma,
            a.max_pulses, a.forget_buffer, a.chop_random) == (0.02, 5.0, 0.5, True, 1000.0, 0.0, 1, True, False)
    assert presets.tile_config("reram-sb-ttv2").algorithm.chop_probability == 0.0
    assert presets.tile_config("reram-sb-chopped-ttv2").algorithm.chop_probability == 0.01
    toml = tomllib.loads('device = { type = "ReRAMSoftBounds" }\n'
                        'algorithm = { preset = "chopped-ttv2-reram-sb", transfer_lr = 0.2 }\n')
    cfg = presets.from_dict(toml)
    assert cfg.algorithm == algo_presets.chopped_ttv2_reram_sb().__class__(
        **{**algo_presets.chopped_ttv2_reram_sb().__dict__, "transfer_lr": 0.2})
    with pytest.raises(ValueError, match="algorithm.preset: got 'nope', must be one of agad-edge, agad-reram-sb"):
        presets.from_dict({"algorithm": {"preset": "nope"}})
    with pytest.raises(ValueError, match="algorithm.preset: got both"):
        presets.from_dict({"algorithm": {"preset": "agad-reram-sb", "type": "TTv2"}})
