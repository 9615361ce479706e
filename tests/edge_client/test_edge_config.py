"""EdgeConfig validation (errors name the field) and TOML round trip."""
from __future__ import annotations

import pytest
import tomli_w

from edge_client.config import ConfigError, EdgeConfig


@pytest.mark.parametrize("field,value,msg", [
    ("latent_dim", 0, "latent_dim: got 0, must be in"),
    ("bits", 6, "bits: got 6, must be one of 32, 16, 8, 4"),
    ("test_fraction", 1.5, "test_fraction: got 1.5"),
    ("autoencoder", "vae", "autoencoder: got 'vae'"),
    ("lr", 0.0, "lr: got 0.0"),
    ("chunk_bytes", 8 << 20, "chunk_bytes: got 8388608"),
    ("batch_size", True, "batch_size: got True, must be an integer"),
    ("analog", {"device": {"type": "NoSuchDevice"}}, "analog: invalid TileConfig"),
])
def test_invalid_values_name_the_field(field, value, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        EdgeConfig(**{field: value})


def test_adam_is_digital_only_and_mtls_needs_both():
    with pytest.raises(ConfigError, match="optimizer: 'adam' is digital only"):
        EdgeConfig(optimizer="adam")
    assert EdgeConfig(optimizer="adam", analog=None).optimizer == "adam"
    with pytest.raises(ConfigError, match="tls_cert/tls_key"):
        EdgeConfig(tls_ca="ca.pem", tls_cert="c.pem")


def test_toml_round_trip_and_unknown_keys(tmp_path):
    cfg = EdgeConfig(latent_dim=16, bits=4, per_feature_scale=True, init_seed=7,
                     analog={"preset": "default", "forward": {"out_noise": 0.02}})
    path = tmp_path / "edge.toml"
    path.write_text(tomli_w.dumps({"edge": cfg.to_dict()}))
    again = EdgeConfig.from_toml(path)
    assert again == cfg
    assert again.tile_config().forward.out_noise == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="unknown keys: latentdim"):
        EdgeConfig.from_dict({"latentdim": 3})
    path.write_text("latent_dim = [")
    with pytest.raises(ConfigError, match="edge.toml is not valid TOML"):
        EdgeConfig.from_toml(path)
    assert EdgeConfig.from_dict({"analog": "none"}).analog is None
    digital = EdgeConfig(analog=None)
    path.write_text(tomli_w.dumps({"edge": digital.to_dict()}))
    assert EdgeConfig.from_toml(path).analog is None  # a digital config stays digital
    assert "token" not in EdgeConfig(token="secret").to_dict()
