"""`analog-edge study ...`: every study loads its settings the same way (preset, then its table of a
--config file) and rejects a file without that table before anything runs."""
import pytest

from analog.studies.config import StudyConfig
from analog.studies.robustness_config import RobustnessConfig
from fleet.cli.study import load_settings


def test_settings_come_from_the_preset_then_the_studys_own_table(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text("seeds = [4]\n[mnist]\nepochs = 3\n")
    rf = load_settings(StudyConfig, True, cfg)                   # top level: seeds, [mnist]
    assert rf.seeds == (4,) and rf.mnist.epochs == 3
    assert rf.least_squares == StudyConfig.quick().least_squares          # untouched: the quick preset's
    cfg.write_text("title = 'other keys and tables: not read'\n[robustness]\nepochs = 5\netas = [0.0, 0.2]\n")
    rb = load_settings(RobustnessConfig, False, cfg)             # its [robustness] table only
    assert rb.epochs == 5 and rb.etas == (0.0, 0.2) and rb.times == RobustnessConfig.full().times
    assert load_settings(RobustnessConfig, True, None) == RobustnessConfig.quick()


def test_a_file_without_the_studys_table_or_with_an_unknown_key_is_one_error(tmp_path):
    cfg = tmp_path / "other.toml"
    cfg.write_text("[mnist]\nepochs = 3\n")
    with pytest.raises(ValueError, match=r"has no \[robustness\] table"):
        load_settings(RobustnessConfig, True, cfg)
    cfg.write_text("[robustness]\nepoch = 3\n")
    with pytest.raises(ValueError, match="^epoch: unknown key; allowed keys are batch_size, clip_sigma, "):
        load_settings(RobustnessConfig, True, cfg)
    with pytest.raises(ValueError, match="no such file"):
        load_settings(StudyConfig, True, tmp_path / "missing.toml")
