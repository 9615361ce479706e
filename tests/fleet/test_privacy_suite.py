"""The server-side attack suite: each attack's defining behaviour on small digit cases, the
re-identification metric, and the suite's report section."""
import numpy as np
import pytest

from edge_client.config import EdgeConfig
from fleet.config import SERVER_ATTACKS
from fleet.privacy import ATTACKS, ClientView, ServerView, Truth, reidentification, run_suite
from fleet.privacy.anchor_attacks import anchor_decoder
from fleet.privacy.decoders import FitSettings
from fleet.privacy.fora import fora
from fleet.privacy.metrics import reconstruction_metrics


def _digits():
    from edge_client.data import load_dataset

    ds = load_dataset("digits")
    return np.array(ds.x, dtype=np.float32), np.array(ds.y)


def _view(encode, latent_dim: int, public: int = 500, anchors: bool = True):
    """A public set (the first `public` digits) and two victims whose 'encoder' is `encode`."""
    x, y = _digits()
    cfg = EdgeConfig.from_dict({"data": {"dataset": "digits"},
                                "model": {"latent_dim": latent_dim, "autoencoder": "mlp", "mlp_hidden": 128}})
    px, py = x[:public], y[:public]
    clients, truth = {}, {}
    for k, (a, b) in enumerate([(public, public + 600), (public + 600, len(x))]):
        name = f"client-{k:03d}"
        kw = {"anchor_idx": np.arange(public), "anchor_z": encode(px)} if anchors else {}
        clients[name] = ClientView(name, encode(x[a:b]), y[a:b], **kw)
        truth[name] = Truth(x[a:b], y[a:b], np.ones(b - a, bool))
    return ServerView(cfg, px, py, clients, None, 10), truth


def _metrics(truth, recon):
    xs = np.concatenate([truth[n].x for n in truth])
    return reconstruction_metrics(xs, np.concatenate([recon[n] for n in truth]))


def _baseline(truth, view, kind):
    from fleet.privacy.suite import baselines

    return _metrics(truth, baselines(view, truth)[kind])


def test_suite_names_match_the_config_names():
    assert tuple(ATTACKS) == SERVER_ATTACKS


def test_identity_encoder_is_inverted_almost_exactly():
    view, truth = _view(lambda x: x.reshape(len(x), -1), 64)
    recon = anchor_decoder(view, list(truth), FitSettings(epochs=60, batch_size=32, latent_noise=0.0), labels=False)
    m, mean = _metrics(truth, recon), _baseline(truth, view, "mean_image")
    assert m["ssim"] > 0.93 and m["psnr"] > 24.0, m        # measured ~0.98 / ~29 dB
    assert m["psnr"] > mean["psnr"] + 10


def test_pure_noise_latents_give_no_more_than_the_free_guesses():
    rng = np.random.default_rng(1)
    view, truth = _view(lambda x: rng.normal(size=(len(x), 16)).astype(np.float32), 16)
    s = FitSettings(epochs=30, batch_size=32)
    plain = _metrics(truth, anchor_decoder(view, list(truth), s, labels=False))
    mean = _baseline(truth, view, "mean_image")
    assert plain["psnr"] < mean["psnr"] + 0.3, (plain, mean)
    labelled = _metrics(truth, anchor_decoder(view, list(truth), s, labels=True))
    class_mean = _baseline(truth, view, "class_mean")
    assert labelled["psnr"] < class_mean["psnr"] + 0.3, (labelled, class_mean)


def test_fora_substitute_recovers_more_than_the_mean_image_without_anchors():
    w = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32) / 8
    view, truth = _view(lambda x: x.reshape(len(x), -1) @ w, 16, anchors=False)
    labelled = _metrics(truth, fora(view, list(truth), FitSettings(epochs=40, lr=3e-3), labels=True))
    mean = _baseline(truth, view, "mean_image")
    assert labelled["psnr"] > mean["psnr"] + 1.0, (labelled, mean)          # measured 13.5 vs 11.4 dB
    assert labelled["ssim"] > mean["ssim"] + 0.1, (labelled, mean)          # 0.78 vs 0.58


def test_reidentification_of_exact_copies_is_total_and_of_the_class_mean_is_chance():
    x, y = _digits()
    assert reidentification(x, y, x, 100, seed=0)["reid"] == 1.0
    cm = np.stack([x[y == c].mean(0) for c in range(10)])[y]
    r = reidentification(x, y, cm, 100, seed=0)
    assert r["chance"] == pytest.approx(0.01) and r["reid"] < 0.05
    small = reidentification(x[:30], y[:30], x[:30], 100, seed=0)      # fewer than 100 per class
    assert small["reid"] == 1.0 and small["chance"] > 0.01
    with pytest.raises(ValueError, match="labels"):
        reidentification(x, y[:5], x)


def test_run_suite_picks_the_strongest_and_reports_the_gain():
    view, truth = _view(lambda x: x.reshape(len(x), -1), 64)
    out = run_suite(view, truth, FitSettings(epochs=10, batch_size=32), candidates=100, progress=False,
                    extra={"own_decoder": ("exact", {n: t.x for n, t in truth.items()})})
    names = [r["attack"] for r in out["rows"]]
    assert "anchor_decoder" in names and "class_mean" in names and "mean_image" in names and "own_decoder" in names
    assert out["skipped"]["pretrained_map_tuned"] == "the server holds no pretrained weights"
    assert set(out["skipped"]) == {"pretrained_map_tuned", "pretrained_map", "pretrained_raw", "fora"}
    assert "fora" not in names and "anchors give" in out["skipped"]["fora"]
    server = [r for r in out["rows"] if r["kind"] == "server"]
    assert out["attack"] == max(server, key=lambda r: r["ssim"])["attack"]
    cm = next(r for r in out["rows"] if r["attack"] == "class_mean")
    assert out["gain_db"] == pytest.approx(out["psnr"] - cm["psnr"]) and out["gain_db"] > 3
    assert 0.5 < out["reid"] <= 1.0 and out["scored_images"] == sum(len(t.x) for t in truth.values())
    own = next(r for r in out["rows"] if r["attack"] == "own_decoder")
    assert own["reid"] == 1.0 and own["kind"] == "own_decoder"


def test_an_attack_the_anchors_cannot_support_is_skipped_with_its_reason():
    view, truth = _view(lambda x: x.reshape(len(x), -1), 64, public=40)      # 40 anchors < 65 for lstsq
    out = run_suite(view, truth, FitSettings(epochs=1), attacks=["anchor_decoder"], progress=False)
    assert "lstsq needs at least 65" in out["skipped"]["anchor_decoder"] and "attack" not in out
    assert [r["attack"] for r in out["rows"]] == ["class_mean", "mean_image"]
