"""Data loaders on files written here (valid and malformed), partitioner and split properties."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from edge_client.data import (DataError, all_partitions, label_skew, load_dataset, partition_indices,
                              split_train_test)


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "i" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_gz_and_plain(tmp_path, images, gz):
    x, y = images
    suffix = ".gz" if gz else ""
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gz else (lambda p, b: p.write_bytes(b))
    write(tmp_path / f"train-images-idx3-ubyte{suffix}", _idx(x[:8]))
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", _idx(y[:8]))
    write(tmp_path / f"t10k-images-idx3-ubyte{suffix}", _idx(x[8:]))
    write(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", _idx(y[8:]))
    ds = load_dataset(str(tmp_path))
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[:, 0] * 255.0, x, atol=1e-3)  # train first, then t10k
    np.testing.assert_array_equal(ds.y, y)
    single = load_dataset(str(tmp_path / f"t10k-images-idx3-ubyte{suffix}"))
    np.testing.assert_array_equal(single.y, y[8:])


def test_idx_malformed(tmp_path, images):
    x, y = images
    bad_magic = tmp_path / "a-images-idx3-ubyte"
    bad_magic.write_bytes(b"\x12\x34" + _idx(x)[2:])
    (tmp_path / "a-labels-idx1-ubyte").write_bytes(_idx(y))
    with pytest.raises(DataError, match="a-images-idx3-ubyte.*magic"):
        load_dataset(str(bad_magic))
    trunc = tmp_path / "b-images-idx3-ubyte"
    trunc.write_bytes(_idx(x)[:-10])
    (tmp_path / "b-labels-idx1-ubyte").write_bytes(_idx(y))
    with pytest.raises(DataError, match="b-images-idx3-ubyte.*body has"):
        load_dataset(str(trunc))
    mismatch = tmp_path / "c-images-idx3-ubyte"
    mismatch.write_bytes(_idx(x))
    (tmp_path / "c-labels-idx1-ubyte").write_bytes(_idx(y[:5]))
    with pytest.raises(DataError, match="5 labels for 12 images"):
        load_dataset(str(mismatch))
    lonely = tmp_path / "sub"
    lonely.mkdir()
    (lonely / "d-images-idx3-ubyte").write_bytes(_idx(x))
    with pytest.raises(DataError, match="labels file .* not found"):
        load_dataset(str(lonely / "d-images-idx3-ubyte"))
    corrupt = tmp_path / "e-images-idx3-ubyte.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"garbage" * 5)
    (tmp_path / "e-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y)))
    with pytest.raises(DataError, match="corrupt gzip"):
        load_dataset(str(corrupt))


def test_cifar_batch_and_refuses_foreign_pickles(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5, 9]
    d = tmp_path / "cifar"
    d.mkdir()
    with open(d / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, fh)
    ds = load_dataset(str(d))
    assert ds.x.shape == (6, 3, 32, 32)
    np.testing.assert_allclose(ds.x[2, 1].ravel() * 255.0, data[2, 1024:2048], atol=1e-3)  # channel-major
    np.testing.assert_array_equal(ds.y, labels)
    # a pickle that would run code on load must be refused, not executed
    evil = tmp_path / "data_batch_9"
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(DataError, match="data_batch_9.*not a CIFAR-10 python batch.*not allowed"):
        load_dataset(str(evil))
    wrong = tmp_path / "data_batch_2"
    with open(wrong, "wb") as fh:
        pickle.dump({b"data": data[:, :100], b"labels": labels}, fh)
    with pytest.raises(DataError, match=r"data_batch_2.*expected \(N, 3072\)"):
        load_dataset(str(wrong))


def test_npz_layouts_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    y = np.arange(5)
    cases = {"nhwc": rng.integers(0, 256, (5, 32, 32, 3)).astype(np.uint8),
             "flat": rng.random((5, 64)).astype(np.float32),
             "nhw": rng.random((5, 8, 8))}
    shapes = {"nhwc": (5, 3, 32, 32), "flat": (5, 1, 8, 8), "nhw": (5, 1, 8, 8)}
    for name, x in cases.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        ds = load_dataset(str(tmp_path / f"{name}.npz"))
        assert ds.x.shape == shapes[name] and 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    np.savez(tmp_path / "nolabel.npz", x=cases["flat"])
    with pytest.raises(DataError, match="nolabel.npz.*'x' and 'y'"):
        load_dataset(str(tmp_path / "nolabel.npz"))
    np.savez(tmp_path / "neg.npz", x=cases["flat"], y=np.array([0, 1, -1, 2, 3]))
    with pytest.raises(DataError, match="labels must be >= 0"):
        load_dataset(str(tmp_path / "neg.npz"))
    np.savez(tmp_path / "rows.npz", x=cases["flat"], y=np.arange(4))
    with pytest.raises(DataError, match="x has 5 rows but y has 4"):
        load_dataset(str(tmp_path / "rows.npz"))
    np.savez(tmp_path / "nan.npz", x=np.full((5, 64), np.nan), y=y)
    with pytest.raises(DataError, match="NaN"):
        load_dataset(str(tmp_path / "nan.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz.*not a readable .npz"):
        load_dataset(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="neither a built-in"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_builtin_digits():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.num_classes == 10
    assert ds.x.max() == pytest.approx(1.0) and ds.x.min() == 0.0


def _labels(n=3000, k=10, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


@pytest.mark.parametrize("alpha", [None, 0.3, 5.0])
def test_partitions_disjoint_complete_reproducible(alpha):
    y = _labels()
    parts = all_partitions(y, 7, alpha=alpha, seed=3)
    allidx = np.concatenate(parts)
    assert allidx.size == y.size and np.unique(allidx).size == y.size  # disjoint and complete
    for pid in range(7):
        np.testing.assert_array_equal(partition_indices(y, 7, pid, alpha=alpha, seed=3), parts[pid])
    assert min(p.size for p in parts) >= 10
    other = all_partitions(y, 7, alpha=alpha, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_dirichlet_skew_grows_as_alpha_falls():
    y = _labels(5000)
    skews = [np.mean([label_skew(all_partitions(y, 10, alpha=a, seed=s), y) for s in range(3)])
             for a in (100.0, 1.0, 0.1)]
    iid = label_skew(all_partitions(y, 10, alpha=None, seed=0), y)
    assert iid < 0.1 and skews[0] < 0.12
    assert skews[0] < skews[1] < skews[2]
    assert skews[2] > 0.5


def test_dirichlet_minimum_size_and_errors():
    y = _labels(300)
    parts = all_partitions(y, 20, alpha=0.05, seed=1, min_size=8)
    assert min(p.size for p in parts) >= 8
    with pytest.raises(DataError, match="alpha: got 0"):
        partition_indices(y, 3, 0, alpha=0.0)
    with pytest.raises(DataError, match=r"partition_id: got 3, must be in \[0, 2\]"):
        partition_indices(y, 3, 3)
    with pytest.raises(DataError, match="num_partitions: got 0"):
        partition_indices(y, 0, 0)


def test_split_train_test_stratified_and_seeded():
    y = _labels(1000)
    idx = np.arange(0, 1000, 2)
    tr, te = split_train_test(idx, y, 0.2, seed=5)
    assert np.intersect1d(tr, te).size == 0 and np.union1d(tr, te).size == idx.size
    assert abs(te.size - 100) <= 5
    for c in range(10):  # stratified: each class ~20% in test
        n_c = np.sum(y[idx] == c)
        assert abs(np.sum(y[te] == c) - 0.2 * n_c) <= 1
    tr2, te2 = split_train_test(idx, y, 0.2, seed=5)
    np.testing.assert_array_equal(te, te2)
    assert not np.array_equal(te, split_train_test(idx, y, 0.2, seed=6)[1])
