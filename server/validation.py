"""Validation of every incoming message; each failure is a `Rejection` (gRPC code + message naming the field).

Pure functions of the message, the registered client and the server limits, so they are tested
without a network and the service only maps a Rejection to ``context.abort``.
"""
from __future__ import annotations

import hmac
import re

import grpc
import numpy as np

from common.errors import AnalogEdgeError
from protos import codec
from protos import latent_service_pb2 as pb
from server.config import ServerConfig
from server.store import ClientInfo

ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_LABEL = 1 << 20
MAX_LATENT_DIM = 1 << 16
MAX_LABELS = 1024
MAX_CONFIG_TOML = 64 << 10
MAX_ANCHOR_INDEX = 1 << 20


class Rejection(AnalogEdgeError):
    """A request the server refuses; ``code`` is the gRPC status, ``message`` names the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Rejection:
    return Rejection(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_client_id(client_id: str, field: str = "client_id") -> None:
    if not client_id:
        raise invalid(f"{field}: missing")
    if not ID_RE.match(client_id):
        raise invalid(f"{field}: got {client_id[:80]!r}, must be 1..64 characters of [A-Za-z0-9._-]")


def check_dtype(dtype: int, field: str = "dtype") -> None:
    if dtype == pb.DTYPE_UNSPECIFIED or dtype not in pb.DType.values():
        raise invalid(f"{field}: got {dtype}, must be one of FLOAT32, FLOAT16, INT8, INT4")


def check_register(req: pb.RegisterRequest, cfg: ServerConfig) -> None:
    if cfg.enrollment_secret is not None:
        if not req.enrollment_secret:
            raise Rejection(grpc.StatusCode.UNAUTHENTICATED, "enrollment_secret: missing, this server requires one")
        if not hmac.compare_digest(req.enrollment_secret.encode(), cfg.enrollment_secret.encode()):
            raise Rejection(grpc.StatusCode.UNAUTHENTICATED, "enrollment_secret: wrong")
    check_client_id(req.client_id)
    if not 1 <= req.latent_dim <= MAX_LATENT_DIM:
        raise invalid(f"latent_dim: got {req.latent_dim}, must be in [1, {MAX_LATENT_DIM}]")
    check_dtype(req.dtype)
    labels = list(req.label_set)
    if not labels:
        raise invalid("label_set: empty, must list the labels this client may send")
    if len(labels) > MAX_LABELS:
        raise Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"label_set: got {len(labels)} labels, limit is {MAX_LABELS}")
    if len(set(labels)) != len(labels):
        raise invalid(f"label_set: has duplicates, got {sorted(labels)}")
    bad = [v for v in labels if not 0 <= v < MAX_LABEL]
    if bad:
        raise invalid(f"label_set: got {bad[0]}, labels must be in [0, {MAX_LABEL})")


def check_auth(client_id: str, token: str, client: ClientInfo | None, token_ok: bool) -> ClientInfo:
    """Token first (UNAUTHENTICATED), then whether the client exists (NOT_FOUND)."""
    if not token:
        raise Rejection(grpc.StatusCode.UNAUTHENTICATED, "token: missing, call Register first")
    if client is None:
        raise Rejection(grpc.StatusCode.NOT_FOUND, f"client_id: {client_id!r} is not registered")
    if not token_ok:
        raise Rejection(grpc.StatusCode.UNAUTHENTICATED, f"token: not valid for client {client_id!r}")
    return client


def check_batch_shape(num_rows: int, latent_dim: int, client: ClientInfo, max_rows: int, per: str,
                      prefix: str = "") -> None:
    """Rows in [1, max_rows] (more is RESOURCE_EXHAUSTED) and the client's registered latent_dim: the
    same rule for an upload header and a Classify request; ``per`` names the unit the limit is per."""
    if num_rows < 1:
        raise invalid(f"{prefix}num_rows: got {num_rows}, must be >= 1")
    if num_rows > max_rows:
        raise Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{prefix}num_rows: got {num_rows}, limit is {max_rows} per {per}")
    if latent_dim != client.latent_dim:
        raise invalid(f"{prefix}latent_dim: got {latent_dim}, client {client.client_id!r} "
                      f"is registered with {client.latent_dim}")


def check_header(h: pb.UploadHeader, client: ClientInfo, cfg: ServerConfig) -> int:
    """Validate an upload header against the registration and limits; return the expected payload size."""
    if not h.upload_id:
        raise invalid("header.upload_id: missing")
    if not UPLOAD_ID_RE.match(h.upload_id):
        raise invalid(f"header.upload_id: got {h.upload_id[:80]!r}, must be 1..128 characters of [A-Za-z0-9._:-]")
    check_batch_shape(h.num_rows, h.latent_dim, client, cfg.max_rows_per_upload, "upload", "header.")
    if not h.HasField("quantization"):
        raise invalid("header.quantization: missing")
    check_dtype(h.quantization.dtype, "header.quantization.dtype")
    if h.quantization.dtype != client.dtype:
        raise invalid(f"header.quantization.dtype: got {pb.DType.Name(h.quantization.dtype)}, client "
                      f"{client.client_id!r} is registered with {pb.DType.Name(client.dtype)}")
    try:
        codec.check_quantization(h.quantization, h.latent_dim, "header.quantization")
    except codec.CodecError as exc:
        raise invalid(str(exc)) from None
    expected = codec.payload_nbytes(h.num_rows, h.latent_dim, h.quantization.dtype)
    if h.payload_bytes != expected:
        raise invalid(f"header.payload_bytes: got {h.payload_bytes}, expected {expected} for {h.num_rows} rows of "
                      f"{h.latent_dim} {pb.DType.Name(h.quantization.dtype)} plus int32 labels")
    if expected > cfg.max_upload_bytes:
        raise Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"header.payload_bytes: {expected} exceeds max_upload_bytes ({cfg.max_upload_bytes}); "
                        "split it into several uploads")
    if h.total_chunks < 1:
        raise invalid(f"header.total_chunks: got {h.total_chunks}, must be >= 1")
    if h.total_chunks > min(cfg.max_chunks, expected):
        raise invalid(f"header.total_chunks: got {h.total_chunks}, must be <= {min(cfg.max_chunks, expected)}")
    return expected


def check_values(z: np.ndarray, field: str = "latents") -> None:
    """Finite values only; the message gives the first bad row and column."""
    finite = np.isfinite(z)
    if not finite.all():
        r, c = map(int, np.argwhere(~finite)[0])
        raise invalid(f"{field}: row {r} column {c} is {z[r, c]}, values must be finite (no NaN/Inf)")


def check_labels(labels: np.ndarray, client: ClientInfo) -> None:
    """Every label in the registered label_set (a lookup table: O(rows), no sorting)."""
    table = np.zeros(max(client.label_set) + 1, dtype=bool)
    table[list(client.label_set)] = True
    inside = (labels >= 0) & (labels < table.size)
    ok = inside.copy()
    ok[inside] = table[labels[inside]]
    if not ok.all():
        r = int(np.argmin(ok))
        raise invalid(f"labels: row {r} has label {int(labels[r])}, not in the registered label_set "
                      f"{list(client.label_set)}")


def check_anchor_indices(indices: np.ndarray) -> None:
    """An anchor upload's int32 column: distinct anchor indices in [0, MAX_ANCHOR_INDEX)."""
    bad = np.flatnonzero((indices < 0) | (indices >= MAX_ANCHOR_INDEX))
    if bad.size:
        r = int(bad[0])
        raise invalid(f"labels: row {r} has anchor index {int(indices[r])}, anchor indices must be in "
                      f"[0, {MAX_ANCHOR_INDEX}) (header.anchors is set)")
    if np.unique(indices).size != indices.size:
        raise invalid("labels: anchor indices repeat within one upload, each anchor is sent once "
                      "(header.anchors is set)")


def _check_latent_values(latent_bytes: bytes, h: pb.UploadHeader) -> None:
    """Finite real values, without materializing them when the dtype makes that unnecessary.

    Integer codes are bounded by their dtype, so scale * (q - zero_point) is finite for every row iff it
    is for the extreme codes; only if that bound overflows do we dequantize to name the bad cell.
    """
    dtype = h.quantization.dtype
    if codec.is_integer(dtype):
        lo, hi = codec.int_range(dtype)
        scale = np.asarray(h.quantization.scale, dtype=np.float32)
        zero = np.asarray(h.quantization.zero_point, dtype=np.float32) if len(h.quantization.zero_point) \
            else np.zeros(1, np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float32 throughout, as dequantize computes
            bound = np.abs(scale) * (np.float32(max(-lo, hi)) + np.abs(zero)).astype(np.float32)
        if np.all(np.isfinite(bound)):
            return
        raw = codec.unpack_latents(latent_bytes, h.num_rows, h.latent_dim, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            check_values(codec.dequantize(raw, h.quantization))
        return
    np_dtype = np.dtype("<f4") if dtype == pb.FLOAT32 else np.dtype("<f2")
    values = np.frombuffer(latent_bytes, dtype=np_dtype).reshape(h.num_rows, h.latent_dim)
    if not np.isfinite(values).all():
        check_values(values)


def decode_payload(h: pb.UploadHeader, payload: bytes, client: ClientInfo) -> tuple[bytes, np.ndarray]:
    """Split and check a complete payload: (latent bytes as sent, labels int32)."""
    try:
        latent_bytes, labels = codec.split_payload(payload, h.num_rows, h.latent_dim, h.quantization.dtype)
    except codec.CodecError as exc:
        raise invalid(str(exc)) from None
    _check_latent_values(latent_bytes, h)
    if h.anchors:
        check_anchor_indices(labels)
    else:
        check_labels(labels, client)
    return latent_bytes, labels


def check_classify(req: pb.ClassifyRequest, client: ClientInfo, cfg: ServerConfig) -> np.ndarray:
    """Validate a Classify request and return its dequantized float32 latents."""
    check_batch_shape(req.num_rows, req.latent_dim, client, cfg.max_classify_rows, "request")
    q = req.quantization if req.HasField("quantization") else pb.Quantization(dtype=client.dtype)
    check_dtype(q.dtype, "quantization.dtype")
    try:
        codec.check_quantization(q, req.latent_dim)
        raw = codec.unpack_latents(req.latents, req.num_rows, req.latent_dim, q.dtype)
        z = codec.dequantize(raw, q)
    except codec.CodecError as exc:
        raise invalid(str(exc)) from None
    check_values(z)
    return z


def classifier_bytes(ccfg, latent_dim: int, n_classes: int, n_clients: int) -> int:
    """A generous estimate of a classifier config's training memory: weights, their gradients and two
    optimizer/analog copies (4 x float32 each), plus a batch of activations forward and backward."""
    extra = ccfg.embedding_dim if ccfg.client_conditioning == "embedding" else 0
    dims = [latent_dim + extra, *ccfg.hidden, n_classes]
    params = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    if ccfg.client_conditioning == "embedding":
        params += n_clients * extra
    elif ccfg.client_conditioning == "adapter":
        per = latent_dim * (latent_dim + 1) if ccfg.adapter_rank == 0 else latent_dim * (2 * ccfg.adapter_rank + 1)
        params += n_clients * per
    activations = ccfg.batch_size * sum(dims) * 3
    return 16 * params + 4 * activations


def check_classifier_config(ccfg, latent_dim: int, n_classes: int, n_clients: int, limit: int) -> None:
    """RESOURCE_EXHAUSTED (naming the fields) for a config whose training would not fit ``limit`` bytes."""
    need = classifier_bytes(ccfg, max(latent_dim, 1), max(n_classes, 2), max(n_clients, 1))
    if need > limit:
        raise Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"config_toml: classifier.hidden {list(ccfg.hidden)} with batch_size {ccfg.batch_size} "
                        f"needs ~{need / 2**20:.0f} MiB to train (latent_dim {latent_dim}, {n_clients} clients), "
                        f"over max_classifier_bytes ({limit / 2**20:.0f} MiB); use smaller layers or batches")
