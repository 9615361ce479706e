"""Autoencoders: shapes, shared init, and real (tiny) training that lowers reconstruction error,
digital and on analog tiles."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import analog
from edge_client.autoencoder import build_autoencoder, is_analog, resolve_kind
from edge_client.data import load_dataset
from edge_client.training import encode, reconstruction_mse, train_autoencoder


@pytest.mark.parametrize("shape,kind", [((1, 28, 28), "conv"), ((3, 32, 32), "conv"), ((1, 8, 8), "mlp")])
def test_shapes_and_auto_kind(shape, kind):
    torch.manual_seed(0)
    m = build_autoencoder(shape, 12, "auto")
    assert m.kind == kind == resolve_kind("auto", shape)
    x = torch.rand(5, *shape)
    assert m.encode(x).shape == (5, 12)
    with torch.no_grad():
        out = m(x)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert m.compression_ratio == pytest.approx(np.prod(shape) / 12)


def test_conv_rejects_odd_sizes():
    with pytest.raises(ValueError, match="autoencoder: 'conv' needs image sides divisible by 4"):
        build_autoencoder((1, 10, 10), 4, "conv")


def test_shared_init_seed_gives_identical_weights_analog_too():
    torch.manual_seed(1)
    a = build_autoencoder((1, 28, 28), 8, "conv", init_seed=42)
    torch.manual_seed(2)
    b = build_autoencoder((1, 28, 28), 8, "conv", init_seed=42)
    c = build_autoencoder((1, 28, 28), 8, "conv", init_seed=43)
    for pa, pb_, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb_)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    torch.manual_seed(3)
    an = build_autoencoder((1, 28, 28), 8, "conv", tile_config=analog.TileConfig(), init_seed=42)
    assert is_analog(an) and not is_analog(a)
    w_digital = a.encoder[0].weight.detach()
    w_analog = an.encoder[0].get_weights().detach()
    # same initial weights, up to programming onto the device bounds (+-0.6 nominal, 30% d2d spread):
    # most are equal, the rest were clipped towards zero (same sign, smaller magnitude)
    wa = w_analog.reshape(w_digital.shape[0], -1).numpy()
    wd = w_digital.reshape(w_digital.shape[0], -1).numpy()
    same = np.isclose(wa, wd, atol=1e-6)
    assert same.mean() > 0.9
    assert np.all(np.sign(wa[~same]) == np.sign(wd[~same])) and np.all(np.abs(wa[~same]) < np.abs(wd[~same]))


@pytest.fixture(scope="module")
def mnist_small():
    ds = load_dataset("mnist5k")
    idx = np.random.default_rng(0).permutation(len(ds))
    return ds.x[idx[:240]], ds.x[idx[240:320]]


def test_digital_training_reduces_reconstruction_error(mnist_small):
    x_tr, x_val = mnist_small
    torch.manual_seed(0)
    m = build_autoencoder((1, 28, 28), 16, "conv")
    r = train_autoencoder(m, x_tr, x_val, epochs=3, batch_size=8, lr=0.01, seed=0, progress=False)
    assert r.val_mse < 0.5 * r.initial_val_mse
    assert r.train_loss[-1] < r.train_loss[0]
    assert reconstruction_mse(m, x_val) == pytest.approx(r.val_mse, rel=1e-6)  # digital: deterministic


def test_analog_training_reduces_reconstruction_error_and_is_seeded(mnist_small):
    x_tr, x_val = mnist_small
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        m = build_autoencoder((1, 28, 28), 16, "conv", tile_config=analog.TileConfig(), init_seed=5)
        r = train_autoencoder(m, x_tr, x_val, epochs=2, batch_size=8, lr=0.01, seed=5, progress=False)
        runs.append((r, m))
    r, m = runs[0]
    assert r.analog
    # pulsed updates on noisy, bounded, asymmetric devices still learn: well below the initial error,
    # and below the error of predicting every pixel as the mean image (~0.067 on MNIST)
    assert r.val_mse < 0.45 * r.initial_val_mse, (r.initial_val_mse, r.val_mse)
    assert r.val_mse < 0.09
    assert runs[1][0].train_loss == r.train_loss        # same seeds: same chip, same pulses
    z = encode(m, x_val)
    assert z.shape == (80, 16) and np.isfinite(z).all()


def test_mlp_on_digits_analog():
    ds = load_dataset("digits")
    torch.manual_seed(0)
    m = build_autoencoder(ds.image_shape, 8, "auto", tile_config=analog.TileConfig(), mlp_hidden=64)
    assert m.kind == "mlp"
    r = train_autoencoder(m, ds.x[:300], ds.x[300:400], epochs=2, batch_size=8, lr=0.01, seed=0, progress=False)
    assert r.val_mse < 0.7 * r.initial_val_mse, (r.initial_val_mse, r.val_mse)
