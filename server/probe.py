"""``ServiceProbe``: a raw probe of the LatentService for the server's tests and benchmarks -- no
retries, one client identity per object.

It sends exactly what it is given (malformed headers and chunks included, through ``.stub``) and
lets gRPC errors surface unchanged, which is what probing the server's checks needs. It is not a
client to build on: devices, the fleet and tools use the project's one retrying client,
``protos.client.LatentClient``. Both build their channels (TLS, mutual TLS) with
``protos.client.make_channel``.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np

from common.validation import ConfigError
from protos import client as service_client
from protos import codec
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc


def _pem(value: str | bytes | None) -> bytes | None:
    return Path(value).read_bytes() if isinstance(value, str) else value


def _channel(address: str, tls_root: str | bytes | None = None, *,
                 server_name: str | None = None, max_message_bytes: int = 16 << 20,
                 tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None) -> grpc.Channel:
    """Insecure channel, or TLS trusting ``tls_root`` (a PEM path or bytes) when given.

    ``tls_cert``/``tls_key`` (PEM paths or bytes, both or neither) present a client certificate, for
    servers started with ``--tls-client-ca`` (mutual TLS).
    """
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("tls_cert/tls_key: set both or neither")
    if tls_cert is not None and tls_root is None:
        raise ConfigError("tls_cert: a client certificate needs tls_root (TLS) as well")
    tls = None if tls_root is None else service_client.TlsOptions(
        root_ca=_pem(tls_root), cert_chain=_pem(tls_cert), private_key=_pem(tls_key), server_name=server_name)
    return service_client.make_channel(address, tls, max_message_bytes)


def upload_messages(header: pb.UploadHeader, payload: bytes, chunk_bytes: int) -> Iterator[pb.UploadRequest]:
    """The stream of one upload: the header, then its chunks (see ``codec.chunk_request`` for why so built)."""
    first = pb.UploadRequest()
    first.header.CopyFrom(header)
    yield first
    for seq, data in enumerate(codec.iter_chunks(payload, chunk_bytes)):
        yield codec.chunk_request(seq, data)


class ServiceProbe:
    """One client identity on one channel: register once, then upload / classify, each call sent once
    as given and its gRPC error raised unchanged."""

    def __init__(self, address: str, client_id: str, *, tls_root: str | bytes | None = None,
                 server_name: str | None = None, timeout: float = 60.0,
                 tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None) -> None:
        self.channel = _channel(address, tls_root, server_name=server_name, tls_cert=tls_cert, tls_key=tls_key)
        self.stub = pb_grpc.LatentServiceStub(self.channel)
        self.client_id = client_id
        self.token = ""
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "ServiceProbe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def register(self, latent_dim: int, dtype: int, label_set: Sequence[int], enrollment_secret: str = "",
                 admin_token: str = "") -> str:
        """Register (or re-register, proving the id with the current token or ``admin_token``)."""
        resp = self.stub.Register(pb.RegisterRequest(client_id=self.client_id, latent_dim=latent_dim, dtype=dtype,
                                                     label_set=list(label_set), enrollment_secret=enrollment_secret,
                                                     token=self.token, admin_token=admin_token),
                                  timeout=self.timeout)
        self.token = resp.token
        return self.token

    def header(self, payload: bytes, num_rows: int, latent_dim: int, quantization: pb.Quantization,
               upload_id: str, chunk_bytes: int) -> pb.UploadHeader:
        return pb.UploadHeader(upload_id=upload_id, client_id=self.client_id, token=self.token, num_rows=num_rows,
                               latent_dim=latent_dim, quantization=quantization,
                               total_chunks=codec.num_chunks(len(payload), chunk_bytes),
                               payload_crc32=codec.crc32(payload), payload_bytes=len(payload))

    def upload(self, values: np.ndarray, labels: np.ndarray, quantization: pb.Quantization | None = None, *,
               upload_id: str | None = None, chunk_bytes: int = codec.DEFAULT_CHUNK_BYTES) -> pb.UploadAck:
        """Upload already-quantized ``values`` (ints for INT*, floats otherwise) with their labels."""
        q = quantization if quantization is not None else pb.Quantization(dtype=pb.FLOAT32)
        values = np.asarray(values)
        payload = codec.build_payload(codec.pack_latents(values, q.dtype), labels)
        return self.upload_payload(payload, values.shape[0], values.shape[1], q, upload_id=upload_id,
                                   chunk_bytes=chunk_bytes)

    def upload_payload(self, payload: bytes, num_rows: int, latent_dim: int, quantization: pb.Quantization, *,
                       upload_id: str | None = None, chunk_bytes: int = codec.DEFAULT_CHUNK_BYTES) -> pb.UploadAck:
        """Upload an already-built payload (latents ++ int32 labels, see protos.codec)."""
        header = self.header(payload, num_rows, latent_dim, quantization, upload_id or uuid.uuid4().hex, chunk_bytes)
        return self.stub.Upload(upload_messages(header, payload, chunk_bytes), timeout=self.timeout)

    def classify(self, values: np.ndarray, quantization: pb.Quantization | None = None) -> pb.ClassifyResponse:
        q = quantization if quantization is not None else pb.Quantization(dtype=pb.FLOAT32)
        values = np.asarray(values)
        return self.stub.Classify(pb.ClassifyRequest(client_id=self.client_id, token=self.token,
                                                     num_rows=values.shape[0], latent_dim=values.shape[1],
                                                     quantization=q, latents=codec.pack_latents(values, q.dtype)),
                                  timeout=self.timeout)

    def status(self, admin_token: str = "") -> pb.StatusResponse:
        """Every client's row with ``admin_token``; else this client's own row once registered."""
        if admin_token:
            req = pb.StatusRequest(admin_token=admin_token)
        else:
            req = pb.StatusRequest(client_id=self.client_id, token=self.token) if self.token else pb.StatusRequest()
        return self.stub.Status(req, timeout=self.timeout)

    def train_classifier(self, config_toml: str = "", admin_token: str = "", timeout: float = 600.0):
        return self.stub.TrainClassifier(pb.TrainClassifierRequest(admin_token=admin_token, config_toml=config_toml),
                                         timeout=timeout)
