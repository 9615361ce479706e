"""Latent quantization: unbiased stochastic rounding, wire round trip, and its accuracy cost on mnist5k."""
from __future__ import annotations

import numpy as np
import pytest

from edge_client.codec import QMAX, quantize_latents, wire_report
from protos import codec as wire
from protos import latent_service_pb2 as pb


@pytest.mark.parametrize("bits", [8, 4])
def test_integer_quantization_is_unbiased_and_within_one_step(bits):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 16)).astype(np.float32)
    runs = np.stack([quantize_latents(z, bits, seed=s).dequantize() for s in range(200)])
    scale = np.abs(z).max() / QMAX[bits]
    err = runs - z
    assert np.all(np.abs(err) <= scale * (1 + 1e-5))            # never more than one grid step off
    # unbiased: the mean over seeds converges to z (per entry, and overall)
    assert abs(err.mean()) < 0.01 * scale
    assert np.abs(err.mean(axis=0)).max() < 0.3 * scale         # 200 draws: se <= 0.5/sqrt(200)=0.035
    # round-to-nearest would be biased on a constant value between grid points; stochastic is not
    const = np.full((4000, 1), 0.3, dtype=np.float32)
    q = quantize_latents(const, bits, scale=[1.0], seed=1).dequantize()
    assert abs(q.mean() - 0.3) < 0.03 and set(np.unique(q)) == {0.0, 1.0}


def test_float16_stochastic_rounding_unbiased():
    z = np.full((20000, 1), 1.0 + 2.0 ** -12, dtype=np.float32)  # a quarter step between half values
    q = quantize_latents(z, 16, seed=3)
    assert q.values.dtype == np.float16 and q.dtype == pb.FLOAT16
    vals = q.values.astype(np.float64)
    assert set(np.unique(vals)) == {1.0, 1.0 + 2.0 ** -10}
    assert abs(vals.mean() - (1.0 + 2.0 ** -12)) < 2e-5           # nearest rounding would give exactly 1.0


@pytest.mark.parametrize("bits,per_feature", [(32, False), (16, False), (8, False), (8, True), (4, True), (4, False)])
def test_wire_round_trip_through_shared_codec(bits, per_feature):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(7, 5)) * np.array([0.1, 1, 10, 1, 1])).astype(np.float32)  # odd count: INT4 padding
    q = quantize_latents(z, bits, per_feature, seed=2)
    assert len(q.quantization.scale) == (0 if bits >= 16 else (5 if per_feature else 1))
    payload = wire.build_payload(q.pack(), np.arange(7))
    lat, labels = wire.split_payload(payload, 7, 5, q.dtype)
    back = wire.dequantize(wire.unpack_latents(lat, 7, 5, q.dtype), q.quantization)
    np.testing.assert_array_equal(labels, np.arange(7))
    np.testing.assert_allclose(back, q.dequantize(), rtol=0, atol=0)
    tol = {32: 0.0, 16: 1e-2}.get(bits)
    if tol is not None:
        np.testing.assert_allclose(back, z, rtol=tol, atol=1e-6)
    else:
        step = np.asarray(q.quantization.scale)
        assert np.all(np.abs(back - z) <= step * (1 + 1e-5))
    if per_feature and bits == 8:  # per-feature scale keeps the small column precise
        assert np.abs(back[:, 0] - z[:, 0]).max() <= 0.1 * np.abs(z[:, 0]).max() / QMAX[8] * 1.01 * 10


def test_quantize_validation():
    with pytest.raises(ValueError, match="bits: got 6"):
        quantize_latents(np.zeros((2, 2)), 6)
    with pytest.raises(ValueError, match="NaN"):
        quantize_latents(np.array([[np.nan, 1.0]]), 8)
    with pytest.raises(ValueError, match=r"latents: got shape \(3,\)"):
        quantize_latents(np.zeros(3), 8)
    with pytest.raises(ValueError, match="scale: got 3 values"):
        quantize_latents(np.ones((2, 2)), 8, scale=[1.0, 1.0, 1.0])


def test_wire_report_ratios():
    r = wire_report(100, 32, 8, 784)
    assert r["payload_bytes"] == 100 * (32 + 4)
    assert r["compression_pixels"] == pytest.approx(24.5)
    assert r["compression_bytes"] == pytest.approx(100 * 788 / 3600)
    assert wire_report(100, 32, 4, 784)["payload_bytes"] == 100 * (16 + 4)


def test_8bit_latents_cost_under_one_point_on_mnist5k():
    """Seeded: a conv AE on 2,500 mnist5k digits (1,500 train / 1,000 test), logistic regression on
    float vs 8-bit latents (mean of 3 rounding seeds). Full-data figures: python -m edge_client.study."""
    from edge_client.study import quantization_study

    res = quantization_study("mnist5k", latent_dim=32, bits_list=(32, 8, 4), epochs=1, batch_size=16,
                             seed=0, repeats=3, subset=2500, test_fraction=0.4)
    assert res["n_test"] == 1000
    acc = {b: v["accuracy"] for b, v in res["results"].items()}
    assert acc["32"] > 0.75, acc                     # the latents carry the digits
    assert acc["32"] - acc["8"] < 0.01, acc           # 8-bit costs < 1 point
    assert acc["32"] - acc["4"] > acc["32"] - acc["8"] - 0.002, acc  # 4-bit is not better than 8-bit
