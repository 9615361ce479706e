"""50 clients upload at once to a real server; every upload succeeds and every row is stored once."""
import threading

import numpy as np
from server_helpers import F32, ChildServer

from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe
from server.store import LatentStore

N_CLIENTS, UPLOADS, ROWS, DIM = 50, 3, 40, 16


def _data(k: int, i: int):
    rng = np.random.default_rng(k * 100 + i)
    return rng.integers(-8, 8, size=(ROWS, DIM)), rng.integers(0, 10, ROWS)


def test_fifty_concurrent_clients(tmp_path):
    srv = ChildServer(tmp_path / "store")
    q = pb.Quantization(dtype=pb.INT4, scale=[0.25])
    start = threading.Barrier(N_CLIENTS)
    errors, acks = [], []

    def run(k: int):
        try:
            with ServiceProbe(srv.address, f"c{k:02d}") as c:
                srv.wait_serving(c.channel)
                c.register(DIM, pb.INT4, range(10))
                start.wait(30)
                for i in range(UPLOADS):
                    v, y = _data(k, i)
                    acks.append(c.upload(v, y, q, upload_id=f"{k}-{i}", chunk_bytes=128))
        except Exception as exc:  # noqa: BLE001 -- collected and asserted below
            errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(N_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(acks) == N_CLIENTS * UPLOADS and not any(a.duplicate for a in acks)
        with ServiceProbe(srv.address, "observer") as c:
            st = c.status(srv.admin)
        assert st.total_rows == N_CLIENTS * UPLOADS * ROWS
        assert sorted((x.rows, x.uploads) for x in st.clients) == [(UPLOADS * ROWS, UPLOADS)] * N_CLIENTS
    finally:
        srv.kill()
    with LatentStore(srv.store) as s:
        for k in (0, 17, 49):
            z, y, ids = s.latents(f"c{k:02d}")
            v = np.concatenate([_data(k, i)[0] for i in range(UPLOADS)])
            np.testing.assert_allclose(z, v * 0.25)
            assert ids == [f"c{k:02d}"] * (UPLOADS * ROWS)
