"""Public-anchor alignment: per-client maps fitted on the latents of shared public images.

Each client's latent space here is a different rotation + scaling + offset of one class structure
(what independently drifting analog encoders give). The anchors are the same public points seen
through every client's transform; the server must recover the transforms without labels, keep the
anchor rows out of the training set, classify a client that has anchors but no labelled rows, and
refuse one without anchors.
"""
import grpc
import numpy as np
import pytest
from server_helpers import ChildServer

from edge_client.codec import quantize_latents
from protos.client import LatentClient, UploadError
from protos import latent_service_pb2 as pb
from server import anchors as am
from server.config import ClassifierConfig, ConfigError

DIM, K = 6, 5
CENTERS = np.random.default_rng(7).normal(scale=2.5, size=(K, DIM))
PUBLIC = np.random.default_rng(8).normal(scale=2.0, size=(120, DIM))     # the public anchor "images"


def _transform(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation, a per-client scale in [0.5, 2], and an offset."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return (q * np.sign(np.diag(r))) * rng.uniform(0.5, 2.0), rng.normal(scale=3.0, size=DIM)


def _see(points: np.ndarray, t, noise: float, seed: int) -> np.ndarray:
    m, b = t
    return (points @ m.T + b + noise * np.random.default_rng(seed).normal(size=points.shape)).astype(np.float32)


@pytest.mark.parametrize("method", am.METHODS)
def test_anchor_map_recovers_a_known_rotation_and_offset(method):
    """Two chips see the same points through different rotations/offsets; after each chip's map the
    same point lands in the same place, to within the anchors' noise (0.01)."""
    ta, tb = _transform(1), _transform(2)
    sets = {"a": (np.arange(120), _see(PUBLIC, ta, 0.01, 0)),
            "b": (np.arange(120)[::-1].copy(), _see(PUBLIC, tb, 0.01, 1)[::-1].copy())}   # order must not matter
    ref_idx, ref = am.reference_space(sets)
    maps = {c: am.fit_map(*sets[c], ref_idx, ref, method, ridge=1e-4) for c in sets}
    fresh = np.random.default_rng(3).normal(scale=2.0, size=(200, DIM))               # points never seen
    za, zb = maps["a"].apply(_see(fresh, ta, 0, 0)), maps["b"].apply(_see(fresh, tb, 0, 0))
    spread = np.sqrt(np.mean((za - za.mean(0)) ** 2))
    assert np.sqrt(np.mean((za - zb) ** 2)) < 0.02 * spread
    # without the maps the two spaces disagree completely
    raw_a, raw_b = _see(fresh, ta, 0, 0), _see(fresh, tb, 0, 0)
    assert np.sqrt(np.mean((raw_a - raw_b) ** 2)) > 0.5 * np.sqrt(np.mean(raw_a ** 2))
    assert maps["a"].residual < 0.02 and maps["a"].anchors_used == 120


def test_anchor_map_needs_enough_shared_anchors():
    z = _see(PUBLIC[:5], _transform(1), 0.0, 0)
    ref_idx, ref = am.reference_space({"a": (np.arange(5), z), "b": (np.arange(5), z)})
    with pytest.raises(am.AnchorError, match="lstsq needs at least 7"):
        am.fit_map(np.arange(5), z, ref_idx, ref, "lstsq")
    with pytest.raises(am.AnchorError, match="share 0 anchor"):
        am.reference_space({"a": (np.arange(5), z), "b": (np.arange(5) + 10, z)})


def test_anchor_config_validation():
    with pytest.raises(ConfigError, match="classifier.anchor_map: got 'pca'"):
        ClassifierConfig(anchor_map="pca")
    with pytest.raises(ConfigError, match="classifier.anchor_ridge"):
        ClassifierConfig(anchor_map="ridge", anchor_ridge=0.0)


def _labelled(n: int, seed: int, t) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    return _see(CENTERS[y] + 0.4 * rng.normal(size=(n, DIM)), t, 0.0, seed), y


def _q(z):
    return quantize_latents(z, 32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ChildServer(tmp_path_factory.mktemp("anchors") / "store")
    yield srv
    srv.kill()


def test_anchor_alignment_through_the_server(server):
    """Three labelled clients with anchors, one with anchors only, one with neither."""
    trans = {f"c{i}": _transform(10 + i) for i in range(5)}
    rows = {}
    with LatentClient(server.address) as cl:
        tokens = {cid: cl.register(cid, DIM, pb.FLOAT32, list(range(K))) for cid in trans}
        for i, cid in enumerate(("c0", "c1", "c2")):
            z, y = _labelled(300, i, trans[cid])
            rows[cid] = len(y)
            cl.upload(cid, tokens[cid], _q(z), y)
        for i, cid in enumerate(("c0", "c1", "c2", "c3")):         # c3: anchors, no labelled rows
            ack = cl.upload(cid, tokens[cid], _q(_see(PUBLIC, trans[cid], 0.01, 50 + i)), np.arange(len(PUBLIC)),
                            anchors=True)
            assert ack.rows_stored == len(PUBLIC)
            assert ack.client_total_rows == rows.get(cid, 0)       # anchors are not training rows
        # an anchor index sent twice in one upload is refused
        with pytest.raises(UploadError) as err:
            cl.upload("c4", tokens["c4"], _q(PUBLIC[:3].astype(np.float32)), np.array([0, 1, 1]), anchors=True)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "anchor indices repeat" in err.value.details

        status = cl.status(admin_token=server.admin)
        by_id = {c.client_id: c for c in status.clients}
        assert status.total_rows == sum(rows.values())            # anchor rows never counted as rows
        assert [by_id[c].anchor_rows for c in ("c0", "c3", "c4")] == [len(PUBLIC), len(PUBLIC), 0]

    with LatentClient(server.address) as admin:
        for amap in ("none", "lstsq"):
            info = admin.train_classifier(f'hidden = [32]\nepochs = 20\nlr = 0.1\nanchor_map = "{amap}"\n',
                                          admin_token=server.admin).classifier
            # the training set is exactly the labelled rows: no anchor row entered it
            assert info.trained_rows + info.held_out_rows == sum(rows.values())
        assert info.anchor_map == "lstsq"

    with LatentClient(server.address) as cl:
        # c3 never uploaded a labelled row: its anchors alone map it onto the shared space
        z, y = _labelled(400, 99, trans["c3"])
        acc3 = float((cl.classify_batched("c3", tokens["c3"], _q(z)) == y).mean())
        z, y = _labelled(400, 98, trans["c1"])
        acc1 = float((cl.classify_batched("c1", tokens["c1"], _q(z)) == y).mean())
        assert acc1 > 0.9 and acc3 > 0.9, (acc1, acc3)
        with pytest.raises(UploadError) as err:
            cl.classify_batched("c4", tokens["c4"], _q(z))
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "'c4' has uploaded no anchor latents" in err.value.details


def test_a_rotated_client_without_alignment_is_misclassified(server):
    """The control of the test above: the same unseen client without its anchor map (a plain
    classifier given c3's rotated latents) is far from the aligned accuracy."""
    from server.classifier.loading import load_classifier

    plain = load_classifier(server.store, version=1)             # trained with anchor_map = "none"
    z, y = _labelled(400, 99, _transform(13))
    acc = float((plain.predict(z, ["c3"] * len(y)) == y).mean())
    assert acc < 0.7, acc
