"""Every bad input gets its status code, a message naming the field, and stores nothing."""
import grpc
import numpy as np
import pytest
from server_helpers import ADMIN, ChildServer

from protos import codec
from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe

DIM = 4
LIMIT = 4096  # --max-upload-bytes of the server under test
QUOTA = 200   # --max-rows-per-client


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    srv = ChildServer(tmp_path_factory.mktemp("val") / "store", "--max-upload-bytes", str(LIMIT),
                      "--max-rows-per-client", str(QUOTA))
    c = ServiceProbe(srv.address, "good")
    srv.wait_serving(c.channel)
    c.register(DIM, pb.FLOAT32, [0, 1, 2])
    other = ServiceProbe(srv.address, "other")
    other.register(DIM, pb.FLOAT32, [0, 1, 2])
    c.upload(np.zeros((3, DIM), np.float32), np.array([0, 1, 2]), upload_id="seed")
    yield srv, c, other
    c.close()
    other.close()
    srv.kill()


def _payload(rows=5, values=None, labels=None, dtype=pb.FLOAT32):
    v = np.ones((rows, DIM), np.float32) if values is None else values
    y = np.zeros(rows, np.int32) if labels is None else np.asarray(labels)
    return codec.build_payload(codec.pack_latents(v, dtype), y)


def _stream(header, payload, chunk=16, seqs=None):
    chunks = list(codec.iter_chunks(payload, chunk))
    yield pb.UploadRequest(header=header)
    for seq in (range(len(chunks)) if seqs is None else seqs):
        yield pb.UploadRequest(chunk=pb.UploadChunk(seq=seq, data=chunks[seq]))


def _header(c, payload, rows=5, chunk=16, **over):
    h = c.header(payload, rows, DIM, pb.Quantization(dtype=pb.FLOAT32), over.pop("upload_id", "bad-1"), chunk)
    for k, v in over.items():
        if k == "quantization":
            h.quantization.CopyFrom(v)
        else:
            setattr(h, k, v)
    return h


def _reject(c, requests, code, field):
    before = c.status(ADMIN)
    with pytest.raises(grpc.RpcError) as err:
        c.stub.Upload(requests, timeout=20)
    assert err.value.code() == code, err.value.details()
    assert field in err.value.details()
    after = c.status(ADMIN)
    assert after.total_rows == before.total_rows
    assert [(x.client_id, x.rows, x.uploads) for x in after.clients] == \
        [(x.client_id, x.rows, x.uploads) for x in before.clients]
    return err.value.details()


INV, UNAUTH = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED


def test_missing_wrong_and_foreign_tokens(env):
    _, c, other = env
    p = _payload()
    _reject(c, _stream(_header(c, p, token=""), p), UNAUTH, "token: missing")
    _reject(c, _stream(_header(c, p, token="nope"), p), UNAUTH, "token: not valid")
    _reject(c, _stream(_header(c, p, token=other.token), p), UNAUTH, "token")


def test_unknown_client(env):
    _, c, _ = env
    p = _payload()
    _reject(c, _stream(_header(c, p, client_id="ghost"), p), grpc.StatusCode.NOT_FOUND, "client_id")
    _reject(c, _stream(_header(c, p, client_id="bad id!"), p), INV, "client_id")


@pytest.mark.parametrize("over,field", [
    ({"latent_dim": DIM + 1}, "header.latent_dim"),
    ({"quantization": pb.Quantization(dtype=9)}, "header.quantization.dtype"),
    ({"quantization": pb.Quantization(dtype=pb.INT8, scale=[1.0])}, "header.quantization.dtype"),
    ({"num_rows": 0}, "header.num_rows"),
    ({"payload_bytes": 7}, "header.payload_bytes"),
    ({"total_chunks": 0}, "header.total_chunks"),
    ({"upload_id": "has space"}, "header.upload_id"),
    ({"upload_id": ""}, "header.upload_id"),
])
def test_bad_header_fields(env, over, field):
    _, c, _ = env
    p = _payload()
    _reject(c, _stream(_header(c, p, **over), p), INV, field)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_latents(env, bad):
    _, c, _ = env
    v = np.ones((5, DIM), np.float32)
    v[3, 2] = bad
    p = _payload(values=v)
    msg = _reject(c, _stream(_header(c, p), p), INV, "latents: row 3 column 2")
    assert "finite" in msg


def test_quantized_values_overflowing_to_inf(env):
    srv, c, _ = env
    with ServiceProbe(srv.address, "q8") as q8:
        q8.register(DIM, pb.INT8, [0])
        q = pb.Quantization(dtype=pb.INT8, scale=[3e38])
        v = np.zeros((4, DIM), np.int8)
        v[2, 1] = 100  # 3e38 * 100 = inf in float32
        p = codec.build_payload(codec.pack_latents(v, pb.INT8), np.zeros(4, np.int32))
        h = q8.header(p, 4, DIM, q, "ovf", 16)
        _reject(q8, _stream(h, p), INV, "latents: row 2 column 1 is inf")
        ok = np.ones((4, DIM), np.int8)  # the same scale with small codes stays finite: accepted
        assert q8.upload(ok, np.zeros(4, np.int32), pb.Quantization(dtype=pb.INT8, scale=[1e30])).rows_stored == 4


def test_label_outside_label_set(env):
    _, c, _ = env
    p = _payload(labels=[0, 1, 2, 7, 0])
    assert "label 7" in _reject(c, _stream(_header(c, p), p), INV, "labels: row 3")


def test_chunks_out_of_order_missing_repeated_and_extra(env):
    _, c, _ = env
    p = _payload()  # 100 bytes -> 7 chunks of 16
    n = codec.num_chunks(len(p), 16)
    _reject(c, _stream(_header(c, p), p, seqs=[0, 2, 1, 3, 4, 5, 6]), INV, "chunk.seq: got 2, expected 1")
    _reject(c, _stream(_header(c, p), p, seqs=range(n - 1)), INV, "chunk.seq: received 6 of")
    _reject(c, _stream(_header(c, p), p, seqs=[0, 0, 1, 2, 3, 4, 5, 6]), INV, "chunk.seq: got 0, expected 1")
    h = _header(c, p, total_chunks=3)
    _reject(c, _stream(h, p), INV, "chunk.seq: got 3, but header.total_chunks is 3")


def test_crc_mismatch(env):
    _, c, _ = env
    p = _payload()
    h = _header(c, p)
    corrupted = bytearray(p)
    corrupted[5] ^= 0xFF
    _reject(c, _stream(h, bytes(corrupted)), INV, "header.payload_crc32")


def test_stream_shape_errors(env):
    _, c, _ = env
    p = _payload()
    _reject(c, iter([]), INV, "header: the stream ended")
    _reject(c, iter([pb.UploadRequest(chunk=pb.UploadChunk(seq=0, data=p))]), INV, "header: the first message")
    h = _header(c, p, total_chunks=1)
    _reject(c, iter([pb.UploadRequest(header=h), pb.UploadRequest(header=h)]), INV, "chunk: expected chunk 0")


def test_payload_over_limit_is_resource_exhausted(env):
    _, c, _ = env
    rows = LIMIT // (4 * DIM + 4) + 1
    p = _payload(rows=rows)
    _reject(c, _stream(_header(c, p, rows=rows, chunk=1024), p, chunk=1024),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "max_upload_bytes")


def test_row_quota_is_resource_exhausted(env):
    _, c, other = env
    ok = other.upload(np.ones((150, DIM), np.float32), np.zeros(150, np.int32), upload_id="q1")
    assert ok.rows_stored == 150
    with pytest.raises(grpc.RpcError) as err:
        other.upload(np.ones((60, DIM), np.float32), np.zeros(60, np.int32), upload_id="q2")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_rows_per_client" in err.value.details()
    assert [x.rows for x in c.status(ADMIN).clients if x.client_id == "other"] == [150]


def test_reused_upload_id_with_other_payload_is_already_exists(env):
    _, c, _ = env
    p = _payload(rows=2)
    _reject(c, _stream(_header(c, p, rows=2, upload_id="seed"), p), grpc.StatusCode.ALREADY_EXISTS,
            "header.upload_id")


@pytest.mark.parametrize("req,code,field", [
    (dict(client_id="x", latent_dim=0, dtype=pb.FLOAT32, label_set=[0]), INV, "latent_dim"),
    (dict(client_id="x", latent_dim=4, dtype=pb.DTYPE_UNSPECIFIED, label_set=[0]), INV, "dtype"),
    (dict(client_id="x", latent_dim=4, dtype=pb.FLOAT32, label_set=[]), INV, "label_set"),
    (dict(client_id="x", latent_dim=4, dtype=pb.FLOAT32, label_set=[1, 1]), INV, "label_set"),
    (dict(client_id="x", latent_dim=4, dtype=pb.FLOAT32, label_set=[-1]), INV, "label_set"),
    (dict(client_id="", latent_dim=4, dtype=pb.FLOAT32, label_set=[0]), INV, "client_id"),
    (dict(client_id="good", latent_dim=8, dtype=pb.FLOAT32, label_set=[0, 1, 2]), UNAUTH, "token"),
    (dict(client_id="new-dim", latent_dim=DIM + 1, dtype=pb.FLOAT32, label_set=[0]),
     grpc.StatusCode.FAILED_PRECONDITION, "latent_dim"),
    (dict(client_id="x", latent_dim=4, dtype=pb.FLOAT32, label_set=list(range(1025))),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "label_set"),
])
def test_register_validation(env, req, code, field):
    _, c, _ = env
    with pytest.raises(grpc.RpcError) as err:
        c.stub.Register(pb.RegisterRequest(**req), timeout=10)
    assert err.value.code() == code and field in err.value.details()


def test_classify_validation(env):
    _, c, _ = env
    bad = pb.ClassifyRequest(client_id="good", token="nope", num_rows=1, latent_dim=DIM,
                             quantization=pb.Quantization(dtype=pb.FLOAT32), latents=bytes(4 * DIM))
    with pytest.raises(grpc.RpcError) as err:
        c.stub.Classify(bad, timeout=10)
    assert err.value.code() == UNAUTH
    bad.token = c.token
    bad.latents = bytes(3)
    with pytest.raises(grpc.RpcError) as err:
        c.stub.Classify(bad, timeout=10)
    assert err.value.code() == INV and "latents: got 3 bytes" in err.value.details()
