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
