"""Durability: broken streams leave nothing, retries store once, kill -9 loses no acknowledged upload."""
import threading
import time

import grpc
import numpy as np
import pytest
from server_helpers import F32, ChildServer

from protos import codec
from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe, upload_messages
from server.store import LatentStore

DIM = 8


def _batch(seed: int, rows: int = 40):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, DIM)).astype(np.float32), rng.integers(0, 10, rows)


def test_broken_stream_leaves_nothing_and_retry_stores_once(tmp_path):
    srv = ChildServer(tmp_path / "store")
    try:
        with ServiceProbe(srv.address, "edge-1") as c:
            srv.wait_serving(c.channel)
            c.register(DIM, pb.FLOAT32, range(10))
            z, y = _batch(1, rows=300)
            payload = codec.build_payload(codec.pack_latents(z, pb.FLOAT32), y)
            header = c.header(payload, 300, DIM, F32, "retry-me", 1024)
            release = threading.Event()
            sent = []

            def half_then_hang():
                for i, msg in enumerate(upload_messages(header, payload, 1024)):
                    if i == 5:
                        release.wait(30)  # the "connection" stalls mid-stream, then drops
                        return
                    sent.append(i)
                    yield msg

            fut = c.stub.Upload.future(half_then_hang(), timeout=30)
            while len(sent) < 5:
                time.sleep(0.01)
            time.sleep(0.2)
            fut.cancel()
            release.set()
            with pytest.raises(grpc.FutureCancelledError):
                fut.result()
            time.sleep(0.3)
            assert c.status().total_rows == 0
            first = c.upload(z, y, F32, upload_id="retry-me", chunk_bytes=1024)
            again = c.upload(z, y, F32, upload_id="retry-me", chunk_bytes=4096)
            assert (first.rows_stored, first.duplicate) == (300, False)
            assert (again.rows_stored, again.duplicate, again.client_total_rows) == (300, True, 300)
            assert c.status().total_rows == 300
    finally:
        srv.kill()
    with LatentStore(srv.store) as s:
        assert s.count() == 300 and s.upload_ids() == [("edge-1", "retry-me", 300)]


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_kill_dash_nine_keeps_every_acknowledged_upload(tmp_path, sync):
    """Both sync modes keep every ack across a server crash (only "full" also survives power loss)."""
    store = tmp_path / "store"
    srv = ChildServer(store, "--store-sync", sync)
    n_clients = 4
    acked: dict[tuple[str, str], pb.UploadAck] = {}
    attempted: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    lock = threading.Lock()
    clients = []
    for k in range(n_clients):
        c = ServiceProbe(srv.address, f"dev-{k}", timeout=10)
        srv.wait_serving(c.channel)
        c.register(DIM, pb.FLOAT32, range(10))
        clients.append(c)

    def pump(k: int, c: ServiceProbe):
        for i in range(10_000):
            uid = f"u{i:05d}"
            z, y = _batch(1000 * k + i, rows=int(20 + (i % 7) * 15))
            with lock:
                attempted[(c.client_id, uid)] = (z, y)
            try:
                ack = c.upload(z, y, F32, upload_id=uid, chunk_bytes=512)
            except grpc.RpcError:
                return
            with lock:
                acked[(c.client_id, uid)] = ack

    threads = [threading.Thread(target=pump, args=(k, c)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()  # SIGKILL while the clients are mid-upload
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert len(acked) >= 40
    assert len(attempted) > len(acked)  # some uploads were in flight at the kill

    with LatentStore(store) as s:
        assert s.integrity_check() == "ok"
        stored = s.upload_ids()
        # every acknowledged upload is present and complete
        for (cid, uid), ack in acked.items():
            got = s.upload(cid, uid)
            assert got is not None, f"acknowledged upload {cid}/{uid} lost"
            np.testing.assert_array_equal(got[0], attempted[(cid, uid)][0])
            np.testing.assert_array_equal(got[1], attempted[(cid, uid)][1])
        # whatever is present was attempted and is whole, never a fragment
        for cid, uid, rows in stored:
            z, y = attempted[(cid, uid)]
            assert rows == len(y)
            np.testing.assert_array_equal(s.upload(cid, uid)[0], z)
        assert s.count() == sum(r for _, _, r in stored)

    # restart on the same store; retrying every attempted upload stores each exactly once
    srv2 = ChildServer(store)
    try:
        for k in range(n_clients):
            total = 0
            with ServiceProbe(srv2.address, f"dev-{k}") as c:
                srv2.wait_serving(c.channel)
                c.token = clients[k].token   # re-registering an existing id needs its current token
                c.register(DIM, pb.FLOAT32, range(10))
                for (cid, uid), (z, y) in sorted(attempted.items()):
                    if cid != c.client_id:
                        continue
                    ack = c.upload(z, y, F32, upload_id=uid)
                    assert ack.duplicate == ((cid, uid) in {(a, b) for a, b, _ in stored})
                    total += len(y)
                rows = [x.rows for x in c.status(srv2.admin).clients if x.client_id == c.client_id]
                assert rows == [total] and ack.client_total_rows == total
        with ServiceProbe(srv2.address, "observer") as c:
            assert c.status().total_rows == sum(len(y) for _, y in attempted.values())
    finally:
        srv2.kill()


def test_sigterm_during_uploads_exits_cleanly_with_every_ack_stored(tmp_path):
    srv = ChildServer(tmp_path / "store")
    acked, stop = [], threading.Event()
    with ServiceProbe(srv.address, "t", timeout=10) as c:
        srv.wait_serving(c.channel)
        c.register(DIM, pb.FLOAT32, range(10))

        def pump():
            for i in range(10_000):
                if stop.is_set():
                    return
                z, y = _batch(i)
                try:
                    c.upload(z, y, F32, upload_id=f"s{i}", chunk_bytes=256)
                except grpc.RpcError:
                    return
                acked.append(f"s{i}")

        t = threading.Thread(target=pump)
        t.start()
        while len(acked) < 10:
            time.sleep(0.01)
        rc = srv.terminate()
        stop.set()
        t.join(30)
    assert rc == 0
    with LatentStore(srv.store) as s:
        assert {u for _, u, _ in s.upload_ids()} >= set(acked)
        assert s.count() == 40 * len(s.upload_ids())
