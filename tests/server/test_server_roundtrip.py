"""Round trip against a real child server: register, upload, status, train, classify, health, reflection."""
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_helpers import F32, ChildServer, clusters

from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe
from server.store import LatentStore


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    store = tmp_path_factory.mktemp("rt") / "store"
    srv = ChildServer(store)
    yield srv
    srv.kill()


def test_round_trip_register_upload_status_train_classify(child):
    dim, k = 6, 3
    with ServiceProbe(child.address, "alpha") as a, ServiceProbe(child.address, "beta") as b:
        child.wait_serving(a.channel)
        a.register(dim, pb.FLOAT32, range(k))
        b.register(dim, pb.INT8, range(k))
        acks = []
        for i in range(3):
            z, y = clusters(120, dim, k, seed=i)
            acks.append(a.upload(z, y, F32, upload_id=f"a-{i}", chunk_bytes=700))
        z, y = clusters(150, dim, k, seed=10)
        q = pb.Quantization(dtype=pb.INT8, scale=[0.1])
        acks.append(b.upload(np.clip(np.round(z / 0.1), -128, 127).astype(np.int8), y, q, upload_id="b-0"))
        assert [x.rows_stored for x in acks] == [120, 120, 120, 150]
        assert [x.client_total_rows for x in acks] == [120, 240, 360, 150]
        st = a.status(child.admin)
        assert st.total_rows == 510
        assert {(c.client_id, c.rows, c.uploads) for c in st.clients} == {("alpha", 360, 3), ("beta", 150, 1)}
        assert st.classifier.version == 0
        with pytest.raises(Exception) as err:
            a.classify(z[:2])
        assert err.value.code().name == "FAILED_PRECONDITION"

        resp = a.train_classifier('hidden = [32]\nepochs = 15\nlr = 0.05\nseed = 3\n', admin_token=child.admin)
        assert resp.classifier.version == 1 and resp.classifier.trained_rows + resp.classifier.held_out_rows == 510
        assert resp.classifier.held_out_accuracy > 0.9
        zt, yt = clusters(200, dim, k, seed=99)
        out = a.classify(zt)
        assert out.classifier_version == 1 and list(out.classes) == [0, 1, 2]
        probs = np.asarray(out.probabilities).reshape(200, 3)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert np.mean(np.asarray(out.labels) == yt) > 0.9
        assert a.status().classifier.version == 1
        # a checkpoint trained by another process (the CLI) is served by the running server
        from server.classifier.training import train_classifier
        from server.config import ClassifierConfig

        train_classifier(child.store, ClassifierConfig(hidden=[8], epochs=2, seed=1))
        assert a.classify(zt[:5]).classifier_version == 2
        assert a.status().classifier.version == 2
    # the server's data on disk agrees with what was sent
    with LatentStore(child.store) as s:
        z0, y0 = s.upload("alpha", "a-0")
        ze, ye = clusters(120, dim, k, seed=0)
        np.testing.assert_array_equal(z0, ze)
        np.testing.assert_array_equal(y0, ye)


def test_reflection_lists_the_services(child):
    import grpc

    with grpc.insecure_channel(child.address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        names = {s.name for r in stub.ServerReflectionInfo(reqs, timeout=10) for s in r.list_services_response.service}
    assert {"analog_edge.v1.LatentService", "grpc.health.v1.Health"} <= names


def test_sigterm_stops_gracefully_and_logs_with_timestamps(tmp_path):
    import re

    srv = ChildServer(tmp_path / "store")
    rc = srv.terminate()
    assert rc == 0
    log = srv.log()
    assert "received SIGTERM" in log and "store closed" in log
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} INFO", log, re.M)
