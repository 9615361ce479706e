"""EdgeConfig validation (errors name the field), its tables, the TOML round trip and the one-line
errors for the flat keys of the earlier layout."""
from __future__ import annotations

import dataclasses

import pytest
import tomli_w

from edge_client.config import MOVED, TABLES, ConfigError, EdgeConfig


@pytest.mark.parametrize("table,field,value,msg", [
    ("model", "latent_dim", 0, "model.latent_dim: got 0, must be in"),
    ("wire", "bits", 6, "wire.bits: got 6, must be one of 32, 16, 8, 4"),
    ("data", "test_fraction", 1.5, "data.test_fraction: got 1.5"),
    ("model", "autoencoder", "vae", "model.autoencoder: got 'vae'"),
    ("training", "lr", 0.0, "training.lr: got 0.0"),
    ("wire", "chunk_bytes", 8 << 20, "wire.chunk_bytes: got 8388608"),
    ("training", "batch_size", True, "training.batch_size: got True, must be an integer"),
    ("link", "max_attempts", 0, "link.max_attempts: got 0"),
    ("public", "upload", "yes", "public.upload: got 'yes', must be true or false"),
    ("init", "seed", -1, "init.seed: got -1"),
    (None, "analog", {"device": {"type": "NoSuchDevice"}}, "analog: invalid TileConfig"),
])
def test_invalid_values_name_the_field(table, field, value, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        EdgeConfig(**({table: {field: value}} if table else {field: value}))


def test_adam_is_digital_only_and_mtls_needs_both():
    with pytest.raises(ConfigError, match="training.optimizer: 'adam' is digital only"):
        EdgeConfig(training={"optimizer": "adam"})
    assert EdgeConfig(training={"optimizer": "adam"}, analog=None).training.optimizer == "adam"
    with pytest.raises(ConfigError, match="link.tls_cert/link.tls_key"):
        EdgeConfig(link={"tls_ca": "ca.pem", "tls_cert": "c.pem"})


def test_toml_round_trip_and_unknown_keys(tmp_path):
    cfg = EdgeConfig(model={"latent_dim": 16}, wire={"bits": 4, "per_feature_scale": True}, init={"seed": 7},
                     analog={"preset": "default", "forward": {"out_noise": 0.02}})
    path = tmp_path / "edge.toml"
    path.write_text(tomli_w.dumps({"edge": cfg.to_dict()}))
    again = EdgeConfig.from_toml(path)
    assert again == cfg
    assert again.tile_config().forward.out_noise == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="^latentdim: unknown key; allowed keys are seed, data, model"):
        EdgeConfig.from_dict({"latentdim": 3})
    with pytest.raises(ConfigError, match="^model.latentdim: unknown key; allowed keys are autoencoder, latent_dim"):
        EdgeConfig.from_dict({"model": {"latentdim": 3}})
    path.write_text("latent_dim = [")
    with pytest.raises(ConfigError, match="edge.toml is not valid TOML"):
        EdgeConfig.from_toml(path)
    assert EdgeConfig.from_dict({"analog": "none"}).analog is None
    assert EdgeConfig.from_dict({"data": {"path": "none"}}).data.path is None     # TOML has no null
    digital = EdgeConfig(analog=None)
    path.write_text(tomli_w.dumps({"edge": digital.to_dict()}))
    assert EdgeConfig.from_toml(path).analog is None  # a digital config stays digital
    assert "token" not in EdgeConfig(link={"token": "secret"}).to_dict()["link"]


def test_every_flat_key_of_the_earlier_layout_names_its_table():
    """`latent_dim = 16` directly in [edge] fails with one line: its table, its name there, that table's keys."""
    assert set(MOVED) >= {"latent_dim", "bits", "epochs", "lr", "data_path", "anchors", "init_seed", "token"}
    for old, (table, name) in MOVED.items():
        assert name in {f.name for f in dataclasses.fields(TABLES[table])}
        with pytest.raises(ConfigError) as exc:
            EdgeConfig.from_dict({"edge": {old: 1}})
        assert str(exc.value).startswith(f"{old}: moved to [edge.{table}] as {name} (keys there: ")
        assert "\n" not in str(exc.value)


def test_replace_by_table_validates_and_keeps_the_rest():
    cfg = EdgeConfig(model={"latent_dim": 16})
    new = cfg.replace({"model.autoencoder": "mlp", "wire.bits": 4, "training.lr": None}, seed=3)
    assert (new.model.latent_dim, new.model.autoencoder, new.wire.bits, new.seed) == (16, "mlp", 4, 3)
    assert new.training == cfg.training and cfg.wire.bits == 8        # None ignored; the original unchanged
    with pytest.raises(ConfigError, match="wire.bits: got 5"):
        cfg.replace({"wire.bits": 5})


def test_the_tile_table_is_resolved_once_at_load_and_again_on_replace():
    import analog

    cfg = EdgeConfig.from_dict({"analog": {"preset": "hwa"}})
    tile = cfg.tile_config()
    assert isinstance(tile, analog.TileConfig) and cfg.tile_config() is tile      # one object, from load
    assert tile == analog.presets.from_dict({"preset": "hwa"})
    assert cfg.analog == {"preset": "hwa"}                                         # the written table stays
    other = cfg.replace(analog={"preset": "default"})
    assert other.tile_config() == analog.presets.from_dict({"preset": "default"}) != tile
    assert EdgeConfig.from_dict({"analog": "none"}).tile_config() is None
