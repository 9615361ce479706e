"""The server classifier: analog and digital MLPs learn, client embeddings separate clashing latent spaces,
checkpoints are versioned and reload, the CLI trains from a store."""
import json

import numpy as np
import pytest

from protos import codec
from protos import latent_service_pb2 as pb
from server import __main__ as server_main
from server.classifier.checkpoints import latest_info
from server.classifier.errors import TrainingError
from server.classifier.loading import load_classifier
from server.classifier.training import train_classifier
from server.config import ClassifierConfig
from server.store import LatentStore

DIM = 6


def _blobs(n, seed, offset=0.0, n_classes=3, sep=4.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    z = rng.normal(scale=0.6, size=(n, DIM))
    z[:, 0] += sep * y + offset
    z[:, 1] += 2.0 * np.sin(y)  # a second informative direction
    return z.astype(np.float32), y


def _fill(store_dir, clients):
    with LatentStore(store_dir) as s:
        for cid, (z, y) in clients.items():
            s.register(cid, DIM, pb.FLOAT32, list(range(int(y.max()) + 1)))
            lat = codec.pack_latents(z, pb.FLOAT32)
            s.commit_upload(cid, "u0", num_rows=len(y), latent_dim=DIM, quantization=pb.Quantization(dtype=pb.FLOAT32),
                            latent_bytes=lat, labels=y, payload_crc32=codec.crc32(codec.build_payload(lat, y)))


def _analog_algorithms():
    import analog

    algs = [{"type": "AnalogSGD"}]
    if hasattr(analog.algorithms, "TikiTaka"):  # one column of P per transfer is slow for 150 steps: 8
        algs.append({"type": "TikiTaka", "columns_per_transfer": 8})
    return algs


@pytest.mark.parametrize("algorithm", [None, *_analog_algorithms()],
                         ids=lambda a: "digital" if a is None else a["type"])
def test_digital_and_analog_classifiers_learn(tmp_path, algorithm):
    _fill(tmp_path, {"a": _blobs(300, 0), "b": _blobs(300, 1)})
    analog_cfg = None if algorithm is None else {"device": {"type": "SoftBounds"}, "algorithm": algorithm}
    cfg = ClassifierConfig(hidden=[32], epochs=10, lr=0.1, batch_size=32, seed=1, analog=analog_cfg)
    r = train_classifier(tmp_path, cfg)
    assert r["mode"] == ("digital" if algorithm is None else "analog")
    assert r["held_out_rows"] + r["trained_rows"] == 600
    assert {c: v["held_out_rows"] for c, v in r["per_client"].items()} == {"a": 60, "b": 60}
    assert r["held_out_accuracy"] > 0.9, r
    assert r["history"][-1]["loss"] < r["history"][0]["loss"]
    z, y = _blobs(400, 5)
    acc = float((load_classifier(tmp_path).predict(z, ["a"] * 400) == y).mean())
    assert acc > 0.9


def test_client_embedding_resolves_clashing_latent_spaces(tmp_path):
    # client b's class k sits where client a's class k+1 does: z alone is ambiguous, (z, client) is not
    _fill(tmp_path, {"a": _blobs(450, 0), "b": _blobs(450, 1, offset=4.0)})
    accs = {}
    for cond in ("none", "embedding"):
        cfg = ClassifierConfig(hidden=[32], epochs=20, lr=0.1, batch_size=32, seed=0, client_conditioning=cond)
        accs[cond] = train_classifier(tmp_path, cfg)["held_out_accuracy"]
    assert accs["embedding"] > 0.9 and accs["none"] < 0.8, accs
    clf = load_classifier(tmp_path)
    z, y = _blobs(300, 9, offset=4.0)
    assert (clf.predict(z, ["b"] * 300) == y).mean() > 0.9
    assert (clf.predict(z, ["a"] * 300) == y).mean() < 0.5  # the same z means another class for client a


def test_versions_reload_and_reproducibility(tmp_path):
    _fill(tmp_path, {"a": _blobs(200, 0)})
    cfg = ClassifierConfig(hidden=[16], epochs=3, seed=4)
    r1, r2 = train_classifier(tmp_path, cfg), train_classifier(tmp_path, cfg)
    assert (r1["version"], r2["version"], latest_info(tmp_path)["version"]) == (1, 2, 2)
    assert r1["history"] == r2["history"]  # same seed, same run
    assert load_classifier(tmp_path, version=1).version == 1
    report = json.loads((tmp_path / "classifiers" / "v0002" / "report.json").read_text())
    assert report["held_out_accuracy"] == r2["held_out_accuracy"]


def test_training_refuses_unusable_stores(tmp_path):
    with pytest.raises(TrainingError, match="min_rows"):
        train_classifier(tmp_path / "empty", ClassifierConfig())
    z, _ = _blobs(50, 0)
    _fill(tmp_path / "one", {"a": (z, np.zeros(50, np.int64))})
    with pytest.raises(TrainingError, match="at least 2 classes"):
        train_classifier(tmp_path / "one", ClassifierConfig())


def test_cli_train_classifier(tmp_path, capsys):
    _fill(tmp_path / "s", {"a": _blobs(200, 0), "b": _blobs(200, 1)})
    cfg = tmp_path / "clf.toml"
    cfg.write_text("[classifier]\nhidden = [16]\nepochs = 4\nlr = 0.05\n")
    assert server_main.main(["train-classifier", "--store", str(tmp_path / "s"), "--config", str(cfg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 1 and out["config"]["hidden"] == [16] and out["config"]["epochs"] == 4
    assert server_main.main(["train-classifier", "--store", str(tmp_path / "s"), "--epochs", "0"]) == 2
    assert "classifier.epochs: got 0" in capsys.readouterr().err
