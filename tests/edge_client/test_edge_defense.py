"""The device-side privacy defenses ([edge.defense]): config validation, clipping, the Gaussian noise on
every released row (training rows and anchors, before quantization), the epsilon accountant, NoPeek
and the label-aware bottleneck."""
from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from edge_client import runner
from edge_client.autoencoder import build_autoencoder
from edge_client.config import ConfigError, DefenseConfig, EdgeConfig
from edge_client.data import load_dataset
from edge_client.defense import clip_rows, epsilon_per_row, release_latents
from edge_client.objectives import class_prototypes, defended_loss, distance_correlation
from edge_client.training import encode, train_autoencoder
from protos import codec as wire
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("table,msg", [
    ({"noise_multiplier": -0.1, "clip_norm": 1.0}, r"defense.noise_multiplier: got -0.1, must be >= 0.0"),
    ({"clip_norm": float("nan")}, r"defense.clip_norm: got nan, must be a finite number"),
    ({"nopeek_weight": "high"}, r"defense.nopeek_weight: got 'high', must be a finite number"),
    ({"label_weight": -1}, r"defense.label_weight: got -1.0, must be >= 0.0"),
    ({"noise_multiplier": 1.0}, r"defense.clip_norm: got 0, must be > 0 when defense.noise_multiplier is set"),
    ({"prototype_weight": -2}, r"defense.prototype_weight: got -2.0, must be >= 0.0"),
    ({"prototype_radius": 0}, r"defense.prototype_radius: got 0.0, must be > 0.0"),
    ({"noise": 1.0}, r"defense.noise: unknown key; allowed keys are noise_multiplier, clip_norm, nopeek_weight, "
                     r"label_weight, prototype_weight, prototype_radius"),
])
def test_bad_values_are_one_line_errors(table, msg):
    with pytest.raises(ConfigError, match=msg) as exc:
        EdgeConfig.from_dict({"edge": {"defense": table}})
    assert "\n" not in str(exc.value)


def test_fleet_names_the_table_and_carries_it_to_the_devices():
    from fleet.config import FleetConfig

    with pytest.raises(ConfigError, match=r"^edge.defense.clip_norm: got -2.0, must be >= 0.0$"):
        FleetConfig.from_dict({"fleet": {}, "edge": {"defense": {"clip_norm": -2.0}}})
    fleet = FleetConfig.from_dict({"fleet": {}, "edge": {"defense": {"noise_multiplier": 0.5, "clip_norm": 3.0,
                                                                     "label_weight": 2}}})
    again = FleetConfig.from_dict(fleet.to_dict())     # what the Flower and local backends send to clients
    assert again.edge_config.defense == DefenseConfig(0.5, 3.0, 0.0, 2.0)
    assert not DefenseConfig(prototype_radius=3.0).active          # the radius alone changes nothing
    assert EdgeConfig.from_dict(again.edge_config.to_dict()).defense == again.edge_config.defense
    assert not EdgeConfig().defense.active


# ---------------------------------------------------------------- clipping and noise
def test_clip_bounds_row_norms_and_leaves_short_rows_alone():
    z = np.random.default_rng(0).normal(0, 2, size=(500, 16)).astype(np.float32)
    out, share = clip_rows(z, 8.0)
    norms = np.linalg.norm(z, axis=1)
    assert np.all(np.linalg.norm(out, axis=1) <= 8.0 * (1 + 1e-6))
    np.testing.assert_array_equal(out[norms <= 8.0], z[norms <= 8.0])
    assert share == pytest.approx(np.mean(norms > 8.0)) and 0.3 < share < 0.95
    assert release_latents(z, DefenseConfig(), 0, 1) is z                  # off: the very same array


def test_noise_is_seeded_per_client_and_stream_with_the_configured_std():
    z = np.zeros((4000, 8), np.float32)
    d = DefenseConfig(noise_multiplier=0.5, clip_norm=2.0)
    a = release_latents(z, d, seed=1, stream=1)
    assert a.std() == pytest.approx(1.0, rel=0.03)                         # 0.5 x 2.0
    np.testing.assert_array_equal(a, release_latents(z, d, seed=1, stream=1))
    assert not np.allclose(a, release_latents(z, d, seed=2, stream=1))
    assert not np.allclose(a, release_latents(z, d, seed=1, stream=2))


# ---------------------------------------------------------------- epsilon
def _analytic_gaussian_epsilon(sigma_over_sensitivity: float, delta: float) -> float:
    """Balle & Wang 2018, Theorem 8: the exact delta(eps) of the Gaussian mechanism, solved for eps."""
    s = sigma_over_sensitivity

    def excess(eps: float) -> float:
        return norm.cdf(1 / (2 * s) - eps * s) - np.exp(eps + norm.logcdf(-1 / (2 * s) - eps * s)) - delta

    return brentq(excess, 1e-9, 5000.0)


def test_epsilon_falls_with_noise_and_matches_the_analytic_gaussian_mechanism():
    mults = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
    eps = [epsilon_per_row(m) for m in mults]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    for m, e in zip(mults, eps):
        # replace-one: sensitivity 2C, std m * C
        assert e == pytest.approx(_analytic_gaussian_epsilon(m / 2, 1e-5), rel=0.02)
    assert epsilon_per_row(0.0) == float("inf")


# ---------------------------------------------------------------- what is uploaded
class CaptureService(pb_grpc.LatentServiceServicer):
    """Registers anyone and keeps every upload as the server would decode it: (z, labels, anchors)."""

    def __init__(self):
        self.uploads: list[tuple[np.ndarray, np.ndarray, bool, pb.Quantization]] = []
        self.lock = threading.Lock()

    def Register(self, request, context):
        return pb.RegisterResponse(client_id=request.client_id, token="tok")

    def Upload(self, request_iterator, context):
        header, chunks = None, []
        for msg in request_iterator:
            if msg.WhichOneof("kind") == "header":
                header = msg.header
            else:
                chunks.append(msg.chunk.data)
        lat, labels = wire.split_payload(b"".join(chunks), header.num_rows, header.latent_dim,
                                         header.quantization.dtype)
        raw = wire.unpack_latents(lat, header.num_rows, header.latent_dim, header.quantization.dtype)
        with self.lock:
            self.uploads.append((raw, wire.dequantize(raw, header.quantization), header.anchors,
                                 header.quantization))
        return pb.UploadAck(upload_id=header.upload_id, rows_stored=header.num_rows,
                            client_total_rows=header.num_rows)


@pytest.fixture()
def capture():
    service = CaptureService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_LatentServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, f"127.0.0.1:{port}"
    server.stop(0).wait()


def _upload(capture, tmp: Path, defense: dict) -> tuple[EdgeConfig, dict, Path]:
    service, addr = capture
    service.uploads.clear()
    cfg = EdgeConfig(analog=None, seed=0, defense=defense, data={"dataset": "digits", "max_samples": 200},
                     model={"autoencoder": "mlp", "latent_dim": 8}, training={"epochs": 1, "lr": 0.05},
                     public={"size": 100})
    state = tmp / f"s{len(list(tmp.iterdir()))}"
    summary = runner.train_and_upload(cfg, addr, "edge-a", 0, 2, None, state, progress=False)
    return cfg, summary, state


def test_noise_is_added_on_the_device_before_quantization_to_rows_and_anchors(capture, tmp_path):
    service, _ = capture
    cfg0, s0, state0 = _upload(capture, tmp_path, {})
    (q0, z0, _, _), (qa0, za0, anchors0, _) = service.uploads
    assert anchors0 and s0.defense is None and "defense" not in s0.to_dict()
    clean = np.load(state0 / runner.TRAIN_LATENTS_FILE)
    np.testing.assert_allclose(z0, clean, atol=float(np.abs(clean).max()) / 127 + 1e-6)   # only rounding
    clip = float(np.median(np.linalg.norm(clean, axis=1)))
    cfg, s, state = _upload(capture, tmp_path, {"noise_multiplier": 0.5, "clip_norm": clip})
    (q, z, anc, quant), (qa, za, anchors, quant_a) = service.uploads
    assert not anc and anchors
    # the same encoder (same seed, no training change): the difference is the device's clip + noise
    np.testing.assert_array_equal(np.load(state / runner.TRAIN_LATENTS_FILE), clean)
    clipped, _ = clip_rows(clean, clip)
    scale = quant.scale[0]
    # on the wire: integers on the upload's grid, so the noise went in before quantization
    assert q.dtype == np.int8 and np.array_equal(z, q.astype(np.float32) * np.float32(scale))
    for got, ref in ((z, clipped), (za, clip_rows(encode(_encoder(cfg, state), runner.public_anchor_images(cfg)),
                                                   clip)[0])):
        resid = got - ref
        assert resid.std() == pytest.approx(0.5 * clip, rel=0.15)        # noise std = multiplier x clip
        assert abs(np.corrcoef(resid.ravel(), ref.ravel())[0, 1]) < 0.15
    assert s.defense.epsilon == pytest.approx(epsilon_per_row(0.5))
    assert s.defense.clipped_share == pytest.approx(0.5, abs=0.02)


def _encoder(cfg: EdgeConfig, state: Path):
    ds = load_dataset(cfg.data.source)
    return runner.load_encoder(cfg, state, ds.image_shape, 0)


def test_zero_defense_trains_exactly_as_before():
    x = load_dataset("digits").x[:120]
    out = []
    for kw in ({}, {"defense": DefenseConfig(), "y_train": np.zeros(120, int)}):
        torch.manual_seed(0)
        model = build_autoencoder((1, 8, 8), 6, "mlp", init_seed=0)
        res = train_autoencoder(model, x, epochs=2, batch_size=16, lr=0.05, seed=3, progress=False, **kw)
        out.append((encode(model, x), res.train_loss))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]


# ---------------------------------------------------------------- training objectives
def _fit(defense: DefenseConfig, x: np.ndarray, y: np.ndarray, epochs: int = 15):
    torch.manual_seed(0)
    model = build_autoencoder((1, 8, 8), 8, "mlp", init_seed=0)
    train_autoencoder(model, x, epochs=epochs, batch_size=32, lr=3e-3, optimizer="adam", seed=0, progress=False,
                      y_train=y, defense=defense, num_classes=10)
    return model


def test_distance_correlation_is_differentiable_and_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert float(distance_correlation(x, 3 * x + 1).detach()) == pytest.approx(1.0, abs=1e-5)
    indep = float(distance_correlation(x, torch.randn(64, 5, generator=g, dtype=torch.float64)))
    assert indep < 0.6
    distance_correlation(x, x ** 2).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_nopeek_lowers_dcor_of_the_latents():
    ds = load_dataset("digits")
    x, y = ds.x[:600], ds.y[:600]
    dcor = {}
    for w in (0.0, 20.0):
        z = encode(_fit(DefenseConfig(nopeek_weight=w), x, y), x)
        dcor[w] = float(distance_correlation(torch.tensor(x), torch.as_tensor(z)))
    assert dcor[20.0] < dcor[0.0] - 0.1, dcor


def test_label_objective_keeps_the_class_and_drops_the_rest():
    """Held-out digits: a linear probe of z classifies better, and a linear decoder fitted on z (an
    inverting server's simplest attack) reconstructs worse than from the plain autoencoder's z."""
    ds = load_dataset("digits")
    x, y = ds.x[:1200], ds.y[:1200]
    tr, te = slice(0, 900), slice(900, 1200)
    probe, recon = {}, {}
    for w in (0.0, 10.0):
        model = _fit(DefenseConfig(label_weight=w), x[tr], y[tr])
        z = np.c_[encode(model, x), np.ones(len(x))]
        onehot = np.eye(10)[y]
        w_cls = np.linalg.lstsq(z[tr], onehot[tr], rcond=None)[0]
        probe[w] = float(np.mean((z[te] @ w_cls).argmax(1) == y[te]))
        flat = x.reshape(len(x), -1)
        w_dec = np.linalg.lstsq(z[tr], flat[tr], rcond=None)[0]
        recon[w] = float(np.mean((z[te] @ w_dec - flat[te]) ** 2))
    assert probe[10.0] > probe[0.0] + 0.05, probe
    assert recon[10.0] > recon[0.0], recon


# ---------------------------------------------------------------- public class prototypes
def test_class_prototypes_are_public_orthogonal_points_of_the_given_norm():
    state = torch.random.get_rng_state()
    p = class_prototypes(10, 32, 7.0)
    assert torch.equal(state, torch.random.get_rng_state())            # the chip's noise streams do not move
    assert p.shape == (10, 32) and p.dtype == torch.float32
    torch.testing.assert_close(p @ p.T, 49.0 * torch.eye(10), atol=1e-4, rtol=0)
    torch.testing.assert_close(class_prototypes(10, 32, 7.0), p, atol=0, rtol=0)   # every device draws the same
    wide = class_prototypes(12, 8, 2.0)                                 # more classes than dimensions
    torch.testing.assert_close(wide.norm(dim=1), torch.full((12,), 2.0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="radius"):
        class_prototypes(10, 32, 0.0)


def test_prototype_term_is_zero_on_the_prototypes_and_off_at_weight_zero():
    p = class_prototypes(10, 16, 5.0)
    y = torch.arange(10)
    x, recon = torch.zeros(10, 4), torch.tensor(3.0)
    on = defended_loss(recon, x, p[y].clone(), y, None, 0.0, 0.0, p, 4.0)
    assert float(on) == pytest.approx(3.0 / 5.0)                       # only recon / (1 + 4) is left
    off = defended_loss(recon, x, p[(y + 1) % 10].clone(), y, None, 0.0, 0.0, p, 0.0)
    assert float(off) == pytest.approx(3.0)                             # weight 0: the plain reconstruction loss
    wrong = defended_loss(recon, x, p[(y + 1) % 10].clone(), y, None, 0.0, 0.0, p, 4.0)
    assert float(wrong) == pytest.approx(3.0 / 5.0 + 4.0 * 2.0)        # another class's point: distance^2 = 2 r^2


def test_prototypes_put_differently_initialized_devices_in_one_class_space():
    """Two devices with different random inits, no exchanged data: with the pull, the nearest public
    prototype classifies each device's held-out latents (the spaces agree on the class); without, it
    is near chance. A linear decoder from z (the simplest inversion) reconstructs worse with it."""
    ds = load_dataset("digits")
    x, y = ds.x[:1200], ds.y[:1200]
    tr, te = slice(0, 900), slice(900, 1200)
    protos = class_prototypes(10, 16, 10.0).numpy()
    flat = x.reshape(len(x), -1)
    near, recon = {}, {}
    for w in (0.0, 10.0):
        for init in (0, 1):
            torch.manual_seed(0)
            model = build_autoencoder((1, 8, 8), 16, "mlp", init_seed=init)
            train_autoencoder(model, x[tr], epochs=15, batch_size=32, lr=3e-3, optimizer="adam", seed=0,
                              progress=False, y_train=y[tr], defense=DefenseConfig(prototype_weight=w), num_classes=10)
            z = encode(model, x)
            near[w, init] = float(np.mean(((z[te, None] - protos[None]) ** 2).sum(-1).argmin(1) == y[te]))
            zz = np.c_[z, np.ones(len(z))]
            w_dec = np.linalg.lstsq(zz[tr], flat[tr], rcond=None)[0]
            recon[w, init] = float(np.mean((zz[te] @ w_dec - flat[te]) ** 2))
    for init in (0, 1):
        assert near[10.0, init] > 0.9 and near[0.0, init] < 0.4, near
        assert recon[10.0, init] > 1.5 * recon[0.0, init], recon
