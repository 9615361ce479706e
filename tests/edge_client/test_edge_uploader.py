"""Uploader against an in-test servicer: chunking, retry/backoff with the same upload_id, no retry on
INVALID_ARGUMENT. (The end-to-end test against the real server is test_edge_e2e.py.)"""
from __future__ import annotations

import threading
from concurrent import futures

import grpc
import numpy as np
import pytest

from edge_client.codec import quantize_latents
from protos.client import LatentClient, RetryPolicy, UploadError
from protos import codec as wire
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc


class FlakyService(pb_grpc.LatentServiceServicer):
    """Fails the first `fail` uploads with `code` (after reading the stream), then commits once per id."""

    def __init__(self, fail: int = 0, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE):
        self.fail, self.code = fail, code
        self.attempt_ids: list[str] = []
        self.chunk_sizes: list[list[int]] = []
        self.committed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.lock = threading.Lock()

    def Register(self, request, context):
        return pb.RegisterResponse(client_id=request.client_id, token="tok-" + request.client_id)

    def Upload(self, request_iterator, context):
        header, chunks = None, []
        for msg in request_iterator:
            if msg.WhichOneof("kind") == "header":
                header = msg.header
            else:
                assert msg.chunk.seq == len(chunks)
                chunks.append(msg.chunk.data)
        with self.lock:
            self.attempt_ids.append(header.upload_id)
            self.chunk_sizes.append([len(c) for c in chunks])
            if self.fail > 0:
                self.fail -= 1
                context.abort(self.code, "injected failure")
            if header.token != "tok-" + header.client_id:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "token: wrong")
            payload = b"".join(chunks)
            if wire.crc32(payload) != header.payload_crc32 or len(chunks) != header.total_chunks:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payload_crc32: mismatch")
            dup = header.upload_id in self.committed
            if not dup:
                lat, labels = wire.split_payload(payload, header.num_rows, header.latent_dim,
                                                 header.quantization.dtype)
                raw = wire.unpack_latents(lat, header.num_rows, header.latent_dim, header.quantization.dtype)
                self.committed[header.upload_id] = (wire.dequantize(raw, header.quantization), labels)
            total = sum(len(v[1]) for v in self.committed.values())
            return pb.UploadAck(upload_id=header.upload_id, rows_stored=header.num_rows, duplicate=dup,
                                client_total_rows=total)


@pytest.fixture()
def serve():
    servers = []

    def start(service):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_LatentServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0).wait()


def _latents(rows=300, dim=16, bits=8):
    z = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    return quantize_latents(z, bits, seed=1), np.arange(rows) % 10


def test_chunked_upload_reassembles_exactly(serve):
    svc = FlakyService()
    addr = serve(svc)
    q, y = _latents(bits=4)
    with LatentClient(addr) as c:
        token = c.register("edge-1", 16, q.dtype, range(10))
        res = c.upload("edge-1", token, q, y, chunk_bytes=500)
    payload_len = wire.payload_nbytes(300, 16, pb.INT4)
    assert res.chunks == -(-payload_len // 500) and res.payload_bytes == payload_len
    assert svc.chunk_sizes[0][:-1] == [500] * (res.chunks - 1) and sum(svc.chunk_sizes[0]) == payload_len
    z_srv, y_srv = svc.committed[res.upload_id]
    np.testing.assert_array_equal(z_srv, q.dequantize())
    np.testing.assert_array_equal(y_srv, y)
    assert res.wire_bytes > res.payload_bytes and res.attempts == 1 and not res.duplicate


def test_retries_unavailable_with_backoff_and_same_upload_id(serve):
    svc = FlakyService(fail=3)
    addr = serve(svc)
    sleeps: list[float] = []
    q, y = _latents()
    policy = RetryPolicy(max_attempts=5, initial_s=0.1, max_s=0.3, multiplier=2.0, jitter=0.0)
    with LatentClient(addr, retry=policy, sleep=sleeps.append) as c:
        res = c.upload("edge-1", "tok-edge-1", q, y)
    assert res.attempts == 4 and res.retry_codes == ["UNAVAILABLE"] * 3
    assert sleeps == pytest.approx([0.1, 0.2, 0.3])             # exponential, capped at max_s
    assert len(set(svc.attempt_ids)) == 1 and len(svc.attempt_ids) == 4
    assert list(svc.committed) == [res.upload_id]
    # a re-run with the same bytes reuses the id: the server reports a duplicate, stores nothing new
    with LatentClient(addr, retry=policy, sleep=sleeps.append) as c:
        again = c.upload("edge-1", "tok-edge-1", q, y)
    assert again.upload_id == res.upload_id and again.duplicate and len(svc.committed) == 1


def test_jitter_keeps_delays_within_bounds(serve):
    svc = FlakyService(fail=4, code=grpc.StatusCode.DEADLINE_EXCEEDED)
    addr = serve(svc)
    sleeps: list[float] = []
    q, y = _latents(rows=10)
    policy = RetryPolicy(max_attempts=5, initial_s=1.0, max_s=8.0, jitter=0.5)
    with LatentClient(addr, retry=policy, sleep=sleeps.append, seed=3) as c:
        assert c.upload("edge-1", "tok-edge-1", q, y).attempts == 5
    for k, s in enumerate(sleeps):
        assert 0.5 * 2 ** k <= s <= 2 ** k
    assert len(set(sleeps)) == 4


def test_invalid_argument_is_never_retried(serve):
    svc = FlakyService(fail=1, code=grpc.StatusCode.INVALID_ARGUMENT)
    addr = serve(svc)
    sleeps: list[float] = []
    q, y = _latents(rows=10)
    with LatentClient(addr, sleep=sleeps.append) as c, pytest.raises(UploadError) as info:
        c.upload("edge-1", "tok-edge-1", q, y)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.attempts == 1
    assert sleeps == [] and len(svc.attempt_ids) == 1 and not svc.committed


def test_gives_up_after_max_attempts(serve):
    svc = FlakyService(fail=10)
    addr = serve(svc)
    q, y = _latents(rows=10)
    with LatentClient(addr, retry=RetryPolicy(max_attempts=3, initial_s=0.0, max_s=0.0), sleep=lambda s: None) as c:
        with pytest.raises(UploadError, match="Upload: UNAVAILABLE after 3 attempt"):
            c.upload("edge-1", "tok-edge-1", q, y)
    assert len(svc.attempt_ids) == 3 and not svc.committed


def test_unreachable_server_is_retried_then_fails():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with LatentClient(f"127.0.0.1:{port}", retry=RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.02,
                                                             timeout_s=2.0), sleep=sleeps.append) as c:
        with pytest.raises(UploadError) as info:
            c.register("edge-1", 8, pb.INT8, [0, 1])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.attempts == 3 and len(sleeps) == 2


def test_rows_per_upload_splits_with_distinct_ids(serve):
    svc = FlakyService()
    addr = serve(svc)
    q, y = _latents(rows=250)
    with LatentClient(addr) as c:
        results = c.upload_all("edge-1", "tok-edge-1", q, y, rows_per_upload=100)
    assert [r.rows for r in results] == [100, 100, 50]
    assert len({r.upload_id for r in results}) == 3 and results[-1].client_total_rows == 250
    z = np.concatenate([svc.committed[r.upload_id][0] for r in results])
    np.testing.assert_array_equal(z, q.dequantize())
