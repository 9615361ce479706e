"""Regression tests of the service's defenses, each against a real child server process.

Takeover (re-register / Status disclosure / tokens), starvation by silent streams, shutdown after a
garbled stream, TrainClassifier access and bounds, one latent_dim per store, the in-flight byte
budget, plaintext off loopback, and the .proto stating the limits the server enforces.
"""
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from server_helpers import ADMIN, F32, ROOT, ChildServer, clusters

from protos import codec
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc
from server import validation as v
from server.probe import ServiceProbe
from server.config import ConfigError, ServerConfig
from server.store import LatentStore

DIM = 4
UNAUTH = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ChildServer(tmp_path_factory.mktemp("sec") / "store", "--header-timeout-seconds", "1",
                    "--max-tokens-per-client", "3")
    yield s
    s.kill()


def _code(fn):
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code(), err.value.details()


# -- 1. client takeover ----------------------------------------------------------------------------
def test_status_discloses_rows_only_to_their_credentials(srv):
    with ServiceProbe(srv.address, "victim") as a, ServiceProbe(srv.address, "bystander") as b:
        srv.wait_serving(a.channel)
        a.register(DIM, pb.FLOAT32, [0, 1])
        b.register(DIM, pb.FLOAT32, [0, 1])
        a.upload(np.ones((5, DIM), np.float32), np.zeros(5, int), F32, upload_id="v1")
        anon = a.stub.Status(pb.StatusRequest(), timeout=10)
        assert list(anon.clients) == [] and anon.total_rows >= 5 and anon.latent_dim == DIM
        assert [c.client_id for c in a.status().clients] == ["victim"]
        assert {"victim", "bystander"} <= {c.client_id for c in a.status(srv.admin).clients}
        assert _code(lambda: a.stub.Status(pb.StatusRequest(client_id="victim", token=b.token), timeout=10))[0] \
            == UNAUTH
        assert _code(lambda: a.stub.Status(pb.StatusRequest(admin_token="guess"), timeout=10))[0] == UNAUTH


def test_reregistering_an_existing_id_needs_its_token_or_the_admin_token(srv):
    with ServiceProbe(srv.address, "owner") as owner, ServiceProbe(srv.address, "owner") as thief:
        srv.wait_serving(owner.channel)
        first = owner.register(DIM, pb.INT8, [3, 4])
        # the thief knows the id and the registration parameters, not a token: no token for it
        code, details = _code(lambda: thief.register(DIM, pb.INT8, [3, 4]))
        assert code == UNAUTH and "token" in details and thief.token == ""
        thief.token = "forged-" + first[7:]
        assert _code(lambda: thief.register(DIM, pb.INT8, [3, 4]))[0] == UNAUTH
        assert _code(lambda: thief.register(DIM, pb.INT8, [3, 4], admin_token="not-it"))[0] == UNAUTH
        # ... and its uploads are refused, nothing reaches the store
        q = pb.Quantization(dtype=pb.INT8, scale=[0.5])
        assert _code(lambda: thief.upload(np.ones((3, DIM), int), np.full(3, 3), q, upload_id="poison"))[0] == UNAUTH
        # the owner (current token) and the operator (admin token) may re-register
        second = owner.register(DIM, pb.INT8, [3, 4])
        assert second != first
        op = ServiceProbe(srv.address, "owner")
        third = op.register(DIM, pb.INT8, [3, 4], admin_token=srv.admin)
        op.close()
        for tok in (first, second, third):
            owner.token = tok
            assert owner.upload(np.ones((2, DIM), int), np.full(2, 4), q, upload_id=f"ok-{tok[:6]}").rows_stored == 2
    with LatentStore(srv.store, readonly=True) as s:
        assert s.upload("owner", "poison") is None


def test_tokens_are_hashed_capped_and_revocable(srv):
    with ServiceProbe(srv.address, "capped") as c:
        srv.wait_serving(c.channel)
        tokens = [c.register(DIM, pb.FLOAT32, [0])]
        for _ in range(4):                       # the server keeps 3 per client (--max-tokens-per-client 3)
            tokens.append(c.register(DIM, pb.FLOAT32, [0]))

        def status_ok(tok: str) -> bool:
            try:
                c.stub.Status(pb.StatusRequest(client_id="capped", token=tok), timeout=10)
                return True
            except grpc.RpcError as exc:
                assert exc.code() == UNAUTH
                return False

        assert [status_ok(t) for t in tokens] == [False, False, True, True, True]   # oldest retired first
        # revoke one token with itself, then all the rest with the admin token
        assert c.stub.RevokeTokens(pb.RevokeTokensRequest(client_id="capped", token=tokens[2]),
                                   timeout=10).revoked == 1
        assert [status_ok(t) for t in tokens[2:]] == [False, True, True]
        assert _code(lambda: c.stub.RevokeTokens(pb.RevokeTokensRequest(client_id="capped", token=tokens[2]),
                                                 timeout=10))[0] == UNAUTH
        assert c.stub.RevokeTokens(pb.RevokeTokensRequest(client_id="capped", admin_token=srv.admin, all=True),
                                   timeout=10).revoked == 2
        assert not any(status_ok(t) for t in tokens)
        # the id is not lost: the operator re-registers it
        c.token = ""
        assert status_ok(c.register(DIM, pb.FLOAT32, [0], admin_token=srv.admin))
    # only hashes are stored: no token appears in the database file
    db = (srv.store / "latents.sqlite3").read_bytes() + (srv.store / "latents.sqlite3-wal").read_bytes()
    assert not any(t.encode() in db for t in tokens)
    with sqlite3.connect(srv.store / "latents.sqlite3") as conn:
        hashes = [r[0] for r in conn.execute("SELECT token_hash FROM tokens")]
    assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


# -- 2. starvation by silent streams ---------------------------------------------------------------
def _silent_streams(address: str, n: int, stop: threading.Event):
    """n Upload streams that open and never send a message (no token needed)."""
    ch = grpc.insecure_channel(address)
    stub = pb_grpc.LatentServiceStub(ch)

    def nothing():
        stop.wait(60)
        return
        yield  # noqa: unreachable -- makes this a generator

    return ch, [stub.Upload.future(nothing(), timeout=60) for _ in range(n)]


def test_silent_upload_streams_neither_starve_others_nor_live_forever(srv):
    stop = threading.Event()
    ch, calls = _silent_streams(srv.address, 150, stop)   # well over the 64 handler threads
    try:
        time.sleep(0.3)
        with ServiceProbe(srv.address, "starved", timeout=3) as c:
            t0 = time.monotonic()
            c.register(DIM, pb.FLOAT32, [0, 1])
            c.status()
            assert c.upload(np.ones((4, DIM), np.float32), np.ones(4, int), F32).rows_stored == 4
            assert time.monotonic() - t0 < 3
        # the header deadline (1 s here) ends every silent stream, unauthenticated or not
        codes = {call.exception(timeout=20).code() for call in calls}
        assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
    finally:
        stop.set()
        ch.close()


def test_pending_streams_evict_the_oldest_and_inflight_budget(tmp_path):
    s = ChildServer(tmp_path / "store", "--max-pending-streams", "8", "--max-upload-bytes", "65536",
                    "--max-inflight-bytes", "65536", "--idle-timeout-seconds", "1.5", "--header-timeout-seconds", "5")
    stop = threading.Event()
    try:
        ch, calls = _silent_streams(s.address, 8, stop)
        time.sleep(0.3)
        ch2, burst = _silent_streams(s.address, 4, stop)   # a burst of young streams is admitted ...
        time.sleep(0.3)
        assert not any(c.done() for c in calls + burst)
        time.sleep(1.0)
        ch3, late = _silent_streams(s.address, 4, stop)    # ... later ones evict those silent for > 1 s
        time.sleep(0.5)
        calls = calls + burst + late
        refused = [c for c in calls if c.done()]
        assert len(refused) == 4 and all(c.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                                            and "max_pending_streams" in c.exception().details() for c in refused)
        with ServiceProbe(s.address, "big", timeout=20) as c:
            s.wait_serving(c.channel)
            c.register(DIM, pb.FLOAT32, [0])
            # 8 silent streams fill the pending slots, yet a real upload gets in (it evicts the oldest)
            assert c.upload(np.ones((2, DIM), np.float32), np.zeros(2, int), F32, upload_id="in").rows_stored == 2
            time.sleep(0.2)
            assert sum(c.done() for c in calls) == 5   # ... by evicting one more silent stream
            stop.set()
            for channel in (ch, ch2, ch3):
                channel.close()
            z = np.ones((3000, DIM), np.float32)                  # 60 000-byte payload: fills the budget
            payload = codec.build_payload(codec.pack_latents(z, pb.FLOAT32), np.zeros(3000, int))

            def held():   # a full-budget upload that takes ~5 s: one 10 000-byte chunk every 0.8 s
                yield from _first(c.header(payload, 3000, DIM, F32, "held", 10_000))
                for seq, data in enumerate(codec.iter_chunks(payload, 10_000)):
                    time.sleep(0.8)
                    yield codec.chunk_request(seq, data)

            first = c.stub.Upload.future(held(), timeout=30)
            time.sleep(0.5)
            code, details = _code(lambda: c.upload(z[:600], np.zeros(600, int), F32, upload_id="second"))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_inflight_bytes" in details
            assert first.result(timeout=20).rows_stored == 3000     # the budget is freed after each upload
            assert c.upload(z[:600], np.zeros(600, int), F32, upload_id="second").rows_stored == 600
    finally:
        stop.set()
        s.kill()


def _first(header: pb.UploadHeader):
    req = pb.UploadRequest()
    req.header.CopyFrom(header)
    yield req


def test_parallel_large_uploads_stay_within_the_inflight_budget(tmp_path):
    """8 concurrent 8 MiB uploads under a 16 MiB budget: all stored, and the server's peak RSS grows far
    less than with all 8 in flight at once (measured here: +115 MiB with the budget, +261 MiB with a
    128 MiB budget; the rest is the allocator keeping freed buffers warm per thread)."""
    s = ChildServer(tmp_path / "store", "--max-upload-bytes", str(8 << 20), "--max-inflight-bytes", str(16 << 20))
    try:
        with ServiceProbe(s.address, "rss") as c:
            s.wait_serving(c.channel)
            c.register(256, pb.FLOAT32, [0])
            c.upload(np.ones((8, 256), np.float32), np.zeros(8, int), F32, upload_id="warm")
        rss0 = _vm(s.proc.pid, "VmRSS")
        rows = (8 << 20) // (256 * 4 + 4) - 1
        z = np.random.default_rng(0).normal(size=(rows, 256)).astype(np.float32)
        errors = []

        def one(k: int):
            try:
                with ServiceProbe(s.address, "rss", timeout=120) as c:
                    c.token = token
                    c.upload(z, np.zeros(rows, int), F32, upload_id=f"big-{k}")
            except Exception as exc:  # noqa: BLE001 -- asserted below
                errors.append(repr(exc))

        with ServiceProbe(s.address, "rss") as c0:
            token = c0.register(256, pb.FLOAT32, [0], admin_token=s.admin)
        threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert not errors, errors[:2]
        grown = _vm(s.proc.pid, "VmHWM") - rss0
        print(f"peak RSS growth {grown / 2**20:.1f} MiB")
        assert grown < 160 << 20, f"peak RSS grew {grown / 2**20:.0f} MiB"
    finally:
        s.kill()
    with LatentStore(s.store, readonly=True) as st:
        assert st.count("rss") == 8 + 8 * rows


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


# -- 3. shutdown bounded whatever the streams did --------------------------------------------------
def test_sigterm_after_a_garbled_and_a_stalled_stream_exits_within_the_grace(tmp_path):
    s = ChildServer(tmp_path / "store", "--grace-seconds", "2", "--header-timeout-seconds", "60",
                    "--idle-timeout-seconds", "60")
    stop = threading.Event()
    try:
        with ServiceProbe(s.address, "g") as c:
            s.wait_serving(c.channel)
            c.register(DIM, pb.FLOAT32, [0])
            payload = codec.build_payload(codec.pack_latents(np.ones((2, DIM), np.float32), pb.FLOAT32), [0, 0])
            header = pb.UploadRequest()
            header.header.CopyFrom(c.header(payload, 2, DIM, F32, "garbled", 1024))
            raw = c.channel.stream_unary("/analog_edge.v1.LatentService/Upload", request_serializer=lambda b: b,
                                         response_deserializer=pb.UploadAck.FromString)
            garbled = [header.SerializeToString(), b"\xff\xff\xff\xff\x0f\x00garbage"]
            code, details = _code(lambda: raw(iter(garbled), timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid UploadRequest" in details

            def stalled():
                yield header
                stop.wait(60)

            hung = c.stub.Upload.future(stalled(), timeout=60)
            ch2, silent = _silent_streams(s.address, 20, stop)
            time.sleep(0.5)
            t0 = time.monotonic()
            rc = s.terminate(timeout=30)
            took = time.monotonic() - t0
            assert rc == 0 and took < 2 + 3, f"exit {rc} after {took:.1f} s"
            assert hung.exception(timeout=10).code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            ch2.close()
    finally:
        stop.set()
        s.kill()
    with LatentStore(s.store, readonly=True) as st:
        assert st.integrity_check() == "ok" and st.count() == 0


# -- 4. TrainClassifier ----------------------------------------------------------------------------
def _fill(address: str, cid: str = "t") -> ServiceProbe:
    c = ServiceProbe(address, cid, timeout=60)
    c.register(DIM, pb.FLOAT32, [0, 1, 2])
    z, y = clusters(90, DIM, 3, seed=1)
    c.upload(z, y, F32, upload_id="rows")
    return c


def test_train_classifier_is_disabled_without_an_admin_token(tmp_path):
    s = ChildServer(tmp_path / "store", admin=None)
    try:
        with ServiceProbe(s.address, "x") as c:
            s.wait_serving(c.channel)
            code, details = _code(lambda: c.train_classifier("epochs = 1"))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "admin token" in details
            code, _ = _code(lambda: c.train_classifier("epochs = 1", admin_token="anything"))
            assert code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        s.kill()


def test_classifier_configs_are_bounded_and_the_server_survives(srv):
    c = _fill(srv.address, "trainer")
    try:
        assert _code(lambda: c.train_classifier("epochs = 1"))[0] == UNAUTH
        code, details = _code(lambda: c.train_classifier("hidden = [65536, 65536]", admin_token=srv.admin))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "classifier.hidden" in details
        code, details = _code(lambda: c.train_classifier("hidden = [1024]\nbatch_size = 1048576",
                                                         admin_token=srv.admin))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "batch_size" in details
        for bad, field in (("hidden = [0]", "classifier.hidden[0]"), ("epochs = 'x'", "classifier.epochs"),
                           ("= nonsense", "config_toml"), ("bogus = 1", "classifier.bogus"),
                           ("x" * (v.MAX_CONFIG_TOML + 1), "config_toml")):
            code, details = _code(lambda: c.train_classifier(bad, admin_token=srv.admin))
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED) \
                and field in details, (bad, code, details)
        ok = c.train_classifier("hidden = [8]\nepochs = 2", admin_token=srv.admin).classifier
        assert ok.version >= 1 and ok.latent_dim == DIM
        assert srv.proc.poll() is None
    finally:
        c.close()


def test_training_out_of_memory_is_resource_exhausted_in_a_child(tmp_path):
    s = ChildServer(tmp_path / "store", "--train-memory-bytes", str(300 << 20))
    try:
        with _fill(s.address) as c:
            code, details = _code(lambda: c.train_classifier("hidden = [8]\nepochs = 1", admin_token=s.admin))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "train_memory_bytes" in details
            assert s.proc.poll() is None and c.status().clients[0].rows == 90
    finally:
        s.kill()


# -- 5. one latent_dim per store -------------------------------------------------------------------
def test_the_first_registration_fixes_the_stores_latent_dim(tmp_path):
    s = ChildServer(tmp_path / "store")
    try:
        with _fill(s.address, "first") as a, ServiceProbe(s.address, "other-dim") as b:
            code, details = _code(lambda: b.register(DIM * 2, pb.FLOAT32, [0, 1]))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and f"latent_dim {DIM}" in details
            assert a.status().latent_dim == DIM
            # so training the whole store keeps working
            assert a.train_classifier("hidden = [8]\nepochs = 2", admin_token=s.admin).classifier.version == 1
    finally:
        s.kill()


# -- 6. plaintext off loopback --------------------------------------------------------------------
def test_a_non_loopback_bind_without_tls_needs_insecure(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "server", "serve", "--host", "0.0.0.0", "--port", "0",
                          "--store", str(tmp_path / "s")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "host: '0.0.0.0' is not a loopback address" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="--insecure"):
        ServerConfig(host="10.1.2.3")
    assert ServerConfig(host="10.1.2.3", insecure=True).insecure
    for host in ("127.0.0.1", "::1", "localhost", "127.3.4.5"):
        ServerConfig(host=host)


# -- 7. the contract states what the server enforces ------------------------------------------------
def test_the_proto_states_the_limits_the_server_enforces():
    text = (ROOT / "protos" / "latent_service.proto").read_text()
    cfg = ServerConfig()
    for value in (cfg.max_message_bytes, cfg.max_upload_bytes, cfg.max_rows_per_upload, cfg.max_chunks,
                  cfg.max_classify_rows, v.MAX_LATENT_DIM, v.MAX_LABELS, v.MAX_LABEL - 1):
        assert str(value) in text, value
    assert f"{cfg.max_message_bytes >> 20} MiB" in text and "4 MB (gRPC" not in text
    assert v.UPLOAD_ID_RE.pattern.strip("^$") in text and v.ID_RE.pattern.strip("^$").replace("{1,64}", "") in text
    assert re.search(r"INT8: one SIGNED two's-complement byte", text)
    assert f"max_tokens_per_client (default {cfg.max_tokens_per_client})" in text
    assert f"header_timeout_seconds (default {cfg.header_timeout_seconds:g} s)" in text
    assert f"idle_timeout_seconds (default {cfg.idle_timeout_seconds:g} s)" in text
    assert f"max_inflight_bytes, default {cfg.max_inflight_bytes >> 20} MiB" in text
    for word in ("ABORTED", "PERMISSION_DENIED", "DEADLINE_EXCEEDED", "Status(credentials)", "optional",
                 "fixes its latent_dim"):
        assert word in text, word
