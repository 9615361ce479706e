"""The public anchor set and the pretrained initialization on the edge side.

The anchor slice is held out of every partition (IID and Dirichlet), so no client trains on,
tests on or uploads as training rows an image that is public; a client uploads its anchors'
latents flagged as anchors (counted in its wire bytes, never among its stored rows); a client
given pretrained weights starts from them (programmed with noise on analog tiles).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_client.config import ConfigError, EdgeConfig
from edge_client.data import load_dataset, public_anchor_indices
from edge_client.pretrain import pretrain_autoencoder, save_weights
from edge_client.runner import build_client_autoencoder, client_data, program_initial_weights, public_anchor_images
from edge_client.training import encode


def test_public_slice_is_the_documented_one_and_class_balanced():
    ds = load_dataset("mnist5k")
    idx = public_anchor_indices(ds.y, 500)
    assert np.array_equal(idx, np.concatenate([np.arange(500 * c + 450, 500 * c + 500) for c in range(10)]))
    assert np.bincount(ds.y[idx]).tolist() == [50] * 10
    assert np.bincount(ds.y[public_anchor_indices(ds.y, 55)]).tolist() == [6] * 5 + [5] * 5


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_anchor_images_are_in_no_partition(alpha):
    cfg = EdgeConfig(seed=3, data={"dataset": "mnist5k"}, public={"size": 200})
    public = set(public_anchor_indices(load_dataset("mnist5k").y, 200).tolist())
    seen = []
    for pid in range(8):
        d = client_data(cfg, pid, 8, alpha)
        own = set(d.train_idx.tolist()) | set(d.test_idx.tolist())
        assert not own & public
        seen += sorted(own)
    assert len(seen) == len(set(seen)) == 5000 - 200                 # disjoint, and everything else is used
    np.testing.assert_array_equal(public_anchor_images(cfg), load_dataset("mnist5k").x[sorted(public)])


def test_anchor_config_is_validated():
    with pytest.raises(ConfigError, match="public.size: got 20, must be in \\[50, 1000\\]"):
        EdgeConfig(public={"size": 20})
    with pytest.raises(ConfigError, match="public.path: set, but public.size is 0"):
        EdgeConfig(public={"path": "/tmp/public.npz"})
    with pytest.raises(ConfigError, match="init.programming.type: got 'gauss'"):
        EdgeConfig(init={"programming": {"type": "gauss"}})


def test_pretrained_init_is_what_each_chip_starts_from(tmp_path):
    """Two analog chips given the pretrained weights encode like the digital model they came from
    (up to programming and read noise), each with its own programming draw."""
    torch.manual_seed(0)
    cfg = EdgeConfig(analog={"device": {"type": "ConstantStep", "w_max_dtod": 0.0, "w_min_dtod": 0.0}},
                     data={"dataset": "digits"}, model={"autoencoder": "mlp", "latent_dim": 8},
                     public={"size": 100}, training={"epochs": 1, "lr": 0.01}, init={"seed": 0})
    x = public_anchor_images(cfg)
    state, mse = pretrain_autoencoder(cfg, x, epochs=30, seed=0)
    path = tmp_path / "init.pt"
    nbytes = save_weights(state, path)
    assert nbytes == 4 * sum(v.numel() for v in state.values())
    pre = cfg.replace({"init.weights": str(path), "init.programming": {"type": "weight_noise", "eta": 0.05}})
    chips = []
    for pid in (0, 1):
        m = build_client_autoencoder(pre, (1, 8, 8), seed=100 + pid)
        assert program_initial_weights(m, pre, seed=100 + pid) == nbytes
        chips.append(encode(m, x))
    from edge_client.autoencoder import build_autoencoder

    digital = build_autoencoder((1, 8, 8), 8, "mlp")
    digital.load_state_dict(state)
    ref = encode(digital, x)
    for z in chips:
        assert np.corrcoef(z.ravel(), ref.ravel())[0, 1] > 0.9
    assert not np.allclose(chips[0], chips[1])                        # two chips, two programming draws
