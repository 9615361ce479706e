"""The one client of the LatentService: retrying, TLS / mutual-TLS capable, every RPC of the contract.

Edge devices (edge_client), the fleet (fleet/run/service.py) and operator tools all use `LatentClient`;
it lives beside the contract so every package above protos may import it. Register once (or reuse a token), then stream each upload as a header and chunks under the gRPC
message limit. A failed attempt with UNAVAILABLE or DEADLINE_EXCEEDED is retried with exponential
backoff and jitter, re-sending the *same* upload_id so the server stores the rows once (it answers
duplicate = true if an earlier attempt had committed). Every other status (INVALID_ARGUMENT,
UNAUTHENTICATED, RESOURCE_EXHAUSTED, ...) is final: retrying a rejected upload cannot help.

Upload ids default to a hash of (client_id, payload): re-running a crashed job that produces the
same bytes re-uses the id and the server again stores nothing twice.
"""
from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
import numpy as np

from common.errors import AnalogEdgeError
from common.validation import ConfigError
from protos import codec as wire
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
GRPC_FRAME_BYTES = 5  # gRPC length-prefixed message header


class WireLatents(Protocol):
    """Latents ready for the wire (edge_client.codec.QuantizedLatents is one): raw values, their
    Quantization, and the packed bytes."""

    values: np.ndarray
    quantization: pb.Quantization

    @property
    def num_rows(self) -> int: ...

    @property
    def latent_dim(self) -> int: ...

    def pack(self) -> bytes: ...

    def rows(self, index: slice) -> "WireLatents": ...


class UploadError(AnalogEdgeError, RuntimeError):
    """An RPC that failed for good: a non-retryable status, or retries exhausted."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str, attempts: int):
        self.rpc, self.code, self.details, self.attempts = rpc, code, details, attempts
        super().__init__(f"{rpc}: {code.name} after {attempts} attempt(s): {details}")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delay_k = min(max_s, initial_s * multiplier**k) * U(1 - jitter, 1)."""

    max_attempts: int = 6
    initial_s: float = 0.2
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    timeout_s: float = 30.0          # deadline of each attempt

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts: got {self.max_attempts}, must be >= 1")
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ConfigError(f"initial_s/max_s: got {self.initial_s}/{self.max_s}, need 0 <= initial_s <= max_s")
        if self.multiplier < 1:
            raise ConfigError(f"multiplier: got {self.multiplier}, must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter: got {self.jitter}, must be in [0, 1]")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s: got {self.timeout_s}, must be > 0")

    def delay(self, retry_index: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * self.multiplier ** retry_index)
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True)
class TlsOptions:
    """PEM bytes: the root CA (server auth), optionally a client cert + key (mutual TLS)."""

    root_ca: bytes
    cert_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(cls, ca: str, cert: str | None = None, key: str | None = None,
                   server_name: str | None = None) -> "TlsOptions":
        def read(p: str | None, what: str) -> bytes | None:
            if p is None:
                return None
            try:
                data = Path(p).read_bytes()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read {p} ({exc.strerror})") from None
            if b"-----BEGIN" not in data:
                raise ConfigError(f"{what}: {p} is not a PEM file")
            return data
        return cls(read(ca, "tls_ca"), read(cert, "tls_cert"), read(key, "tls_key"), server_name)


@dataclass
class UploadResult:
    """One committed upload: the server's acknowledgement and what it cost."""

    upload_id: str
    rows: int
    rows_stored: int
    duplicate: bool
    client_total_rows: int
    attempts: int
    payload_bytes: int
    wire_bytes: int
    chunks: int
    seconds: float
    retry_codes: list[str] = field(default_factory=list)


def default_upload_id(client_id: str, payload: bytes, part: int = 0) -> str:
    digest = hashlib.sha256(client_id.encode() + b"\0" + payload).hexdigest()[:32]
    return f"u{digest}-{part}"


def make_channel(address: str, tls: TlsOptions | None = None,
                 max_message_bytes: int = 4 * 1024 * 1024) -> grpc.Channel:
    """An insecure channel, or TLS (mutual when `tls` has a client cert) with gRPC's own retries
    off: the caller's retry loop decides, the channel must not silently retry underneath it."""
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.enable_retries", 0)]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(tls.root_ca, tls.private_key, tls.cert_chain)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(address, creds, options=options)


class LatentClient:
    """A gRPC client of analog_edge.v1.LatentService with retries; use as a context manager."""

    def __init__(self, address: str, *, tls: TlsOptions | None = None,
                 retry: RetryPolicy | None = None, seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep,
                 max_message_bytes: int = 4 * 1024 * 1024):
        if not isinstance(address, str) or ":" not in address:
            raise ConfigError(f"server: got {address!r}, must be HOST:PORT")
        self.address = address
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._channel = make_channel(address, tls, max_message_bytes)
        self._stub = pb_grpc.LatentServiceStub(self._channel)

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "LatentClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, rpc: str, fn: Callable[[], object], codes: list[str] | None = None):
        """Run fn() with retries on RETRYABLE codes; return (result, attempts)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(), attempt
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = exc.details() if hasattr(exc, "details") else str(exc)
                if code not in RETRYABLE or attempt >= self.retry.max_attempts:
                    raise UploadError(rpc, code, details or "", attempt) from None
                wait = self.retry.delay(attempt - 1, self._rng)
                if codes is not None:
                    codes.append(code.name)
                log.warning("%s: %s (%s); retry %d/%d in %.2fs", rpc, code.name, details,
                            attempt, self.retry.max_attempts - 1, wait)
                self._sleep(wait)

    # ------------------------------------------------------------------ RPCs
    def register(self, client_id: str, latent_dim: int, dtype: int, label_set: Sequence[int],
                 enrollment_secret: str | None = None, token: str | None = None) -> str:
        """Register this client's latent_dim/dtype/labels; returns the token for later calls.
        Re-registering an existing id needs one of its current tokens (``token``)."""
        req = pb.RegisterRequest(client_id=client_id, latent_dim=int(latent_dim), dtype=dtype,
                                 label_set=sorted({int(v) for v in label_set}),
                                 enrollment_secret=enrollment_secret or "", token=token or "")
        resp, _ = self._call("Register", lambda: self._stub.Register(req, timeout=self.retry.timeout_s))
        return resp.token

    def upload(self, client_id: str, token: str, latents: WireLatents, labels: np.ndarray,
               upload_id: str | None = None, chunk_bytes: int = wire.DEFAULT_CHUNK_BYTES,
               part: int = 0, anchors: bool = False) -> UploadResult:
        """Stream one upload (all rows of `latents`), retrying with the same upload_id. With
        ``anchors`` the rows are public-anchor latents and ``labels`` their anchor indices."""
        labels = np.asarray(labels)
        if labels.shape != (latents.num_rows,):
            raise wire.CodecError(f"labels: got shape {labels.shape}, must be ({latents.num_rows},)")
        payload = wire.build_payload(latents.pack(), labels)
        upload_id = upload_id or default_upload_id(client_id, payload, part)
        total = wire.num_chunks(len(payload), chunk_bytes)
        header = pb.UploadRequest(header=pb.UploadHeader(
            upload_id=upload_id, client_id=client_id, token=token, num_rows=latents.num_rows,
            latent_dim=latents.latent_dim, quantization=latents.quantization, total_chunks=total,
            payload_crc32=wire.crc32(payload), payload_bytes=len(payload), anchors=anchors))
        wire_bytes = header.ByteSize() + GRPC_FRAME_BYTES

        chunks = [wire.chunk_request(seq, data) for seq, data in enumerate(wire.iter_chunks(payload, chunk_bytes))]
        wire_bytes += sum(chunk.ByteSize() + GRPC_FRAME_BYTES for chunk in chunks)

        def messages() -> Iterator[pb.UploadRequest]:
            yield header
            yield from chunks

        codes: list[str] = []
        t0 = time.perf_counter()
        ack, attempts = self._call(
            "Upload", lambda: self._stub.Upload(messages(), timeout=self.retry.timeout_s), codes)
        return UploadResult(upload_id=ack.upload_id or upload_id, rows=latents.num_rows,
                            rows_stored=ack.rows_stored, duplicate=ack.duplicate,
                            client_total_rows=ack.client_total_rows, attempts=attempts,
                            payload_bytes=len(payload), wire_bytes=wire_bytes, chunks=total,
                            seconds=time.perf_counter() - t0, retry_codes=codes)

    def upload_all(self, client_id: str, token: str, latents: WireLatents, labels: np.ndarray,
                   rows_per_upload: int = 0, chunk_bytes: int = wire.DEFAULT_CHUNK_BYTES
                   ) -> list[UploadResult]:
        """Split into uploads of at most rows_per_upload rows (0 = one upload), each its own id."""
        n = latents.num_rows
        step = rows_per_upload if rows_per_upload > 0 else n
        results = []
        for part, start in enumerate(range(0, n, step)):
            sl = slice(start, min(n, start + step))
            piece = latents.rows(sl)
            results.append(self.upload(client_id, token, piece, np.asarray(labels)[sl],
                                       chunk_bytes=chunk_bytes, part=part))
        return results

    def classify(self, client_id: str, token: str, latents: WireLatents) -> pb.ClassifyResponse:
        req = pb.ClassifyRequest(client_id=client_id, token=token, num_rows=latents.num_rows,
                                 latent_dim=latents.latent_dim, quantization=latents.quantization,
                                 latents=latents.pack())
        if req.ByteSize() > 4 * 1024 * 1024 - 1024:
            raise wire.CodecError(f"latents: {latents.num_rows} rows make a {req.ByteSize()}-byte Classify "
                             f"request, over the 4 MB limit; classify in smaller batches")
        resp, _ = self._call("Classify", lambda: self._stub.Classify(req, timeout=self.retry.timeout_s))
        return resp

    def classify_batched(self, client_id: str, token: str, latents: WireLatents,
                         batch_rows: int = 4096) -> np.ndarray:
        """Predicted labels for all rows, in Classify calls of at most batch_rows rows."""
        preds = []
        for start in range(0, latents.num_rows, batch_rows):
            sl = slice(start, start + batch_rows)
            piece = latents.rows(sl)
            resp = self.classify(client_id, token, piece)
            if len(resp.labels) != piece.num_rows:
                raise UploadError("Classify", grpc.StatusCode.INTERNAL,
                                  f"got {len(resp.labels)} labels for {piece.num_rows} rows", 1)
            preds.append(np.asarray(resp.labels, dtype=np.int64))
        return np.concatenate(preds) if preds else np.empty(0, dtype=np.int64)

    def status(self, client_id: str = "", token: str = "", admin_token: str = "") -> pb.StatusResponse:
        """Store totals; plus this client's row (client_id + token) or every row (admin_token)."""
        req = pb.StatusRequest(client_id=client_id, token=token, admin_token=admin_token)
        resp, _ = self._call("Status", lambda: self._stub.Status(req,
                                                                 timeout=self.retry.timeout_s))
        return resp

    def train_classifier(self, config_toml: str = "", admin_token: str = "",
                         timeout_s: float = 3600.0) -> pb.TrainClassifierResponse:
        """Retrain the server classifier (admin). Tried once: a retry after a deadline could start
        a second training run while the first is still going."""
        req = pb.TrainClassifierRequest(admin_token=admin_token, config_toml=config_toml)
        try:
            return self._stub.TrainClassifier(req, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise UploadError("TrainClassifier", exc.code(), exc.details() or "", 1) from None

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the channel connects (raises UploadError UNAVAILABLE otherwise)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise UploadError("connect", grpc.StatusCode.UNAVAILABLE,
                              f"no server at {self.address} within {timeout_s}s", 1) from None
