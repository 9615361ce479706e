"""The latent service under load, faults and hostile input: one command, a table and JSON.

    python benchmarks/reliability.py [--quick] [--seconds 10] [--clients 100 500] [--rounds 20]
                                     [--fuzz-seconds 60] [--seed 0] [--out runs/reliability]

Every part runs a real server child process (``python -m server serve``) on a fresh store:

* load: N concurrent clients (grpc.aio, one channel = one TCP connection each, loopback) stream
  small INT8 uploads for a fixed time. Reported: uploads/s, rows/s, p50/p99 latency, errors (must be
  0), the server's RSS before/after and its open file descriptors (peak while loaded, and after).
  Then one client streams 1.1 MB uploads and is compared with the raw protobuf ceiling (serialize +
  parse of the very same messages, measured in the same run).
* faults, each ``--rounds`` times at random moments (seeded): ``kill -9`` of the server mid-upload
  then a restart; a client process killed mid-stream; a stalled client; the store's disk full (a
  size-limited tmpfs, needs root); a connection cut by bringing down a veth link between two network
  namespaces made here (needs root and iproute2; addresses 10.213.x.x exist only inside them).
  After each round: SQLite's integrity check, every acknowledged upload present and identical,
  nothing present that was not attempted or is partial, no upload twice, and after retries with the
  same upload_id every attempted upload stored exactly once. "ack lost" counts uploads the server
  committed whose acknowledgement never reached the client (possible only when the server dies or
  the link drops between commit and ack); the retry answers them duplicate = true.
* fuzz: a hypothesis property-based fuzzer sends random and mutated messages and raw bytes to every
  RPC for ``--fuzz-seconds``; the process must stay up, every answer must be a status code other
  than UNKNOWN/INTERNAL, and the store must be unchanged.

The same functions back the CI tests (tests/server/test_server_reliability.py) with small budgets.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from protos import codec  # noqa: E402
from protos import latent_service_pb2 as pb  # noqa: E402
from protos import latent_service_pb2_grpc as pb_grpc  # noqa: E402
from server.probe import ServiceProbe, upload_messages  # noqa: E402
from server.store import LatentStore  # noqa: E402

ADMIN = "reliability-admin-token"
DIM = 8
F32 = pb.Quantization(dtype=pb.FLOAT32)
METHOD = "/analog_edge.v1.LatentService/"


# -- a real server process -------------------------------------------------------------------------
class Server:
    """``python -m server serve`` on a free port (optionally inside a network namespace); stopped by pid."""

    def __init__(self, store: Path, *extra: str, host: str = "127.0.0.1", netns: str | None = None,
                 admin: str = ADMIN) -> None:
        self.store = Path(store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.port_file = self.store.parent / f"{self.store.name}.port"
        self.port_file.unlink(missing_ok=True)
        self.log = open(self.store.parent / f"{self.store.name}.log", "ab")
        cmd = [sys.executable, "-m", "server", "serve", "--host", host, "--port", "0", "--store", str(self.store),
               "--port-file", str(self.port_file), "--torch-threads", "0", "--log-level", "WARNING",
               "--grace-seconds", "2", "--admin-token", admin, *extra]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]   # ip execs the command: the pid is the server's
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start (exit {self.proc.returncode}); see {self.log.name}")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        self.address = f"{host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.log.close()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.log.close()
        return rc


def proc_stat(pid: int) -> dict[str, int]:
    """RSS (bytes) and open file descriptors of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return {"rss": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


# -- what was sent, what must be stored ------------------------------------------------------------
def batch_for(client_id: str, upload_id: str, max_rows: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic content of an upload, so any process can recompute what was attempted."""
    rng = np.random.default_rng(zlib.crc32(f"{client_id}/{upload_id}".encode()))
    rows = int(rng.integers(1, max_rows + 1))
    return rng.normal(size=(rows, DIM)).astype(np.float32), rng.integers(0, 4, rows)


class Ledger:
    """Thread-safe record of attempted and acknowledged uploads."""

    def __init__(self) -> None:
        self.attempted: set[tuple[str, str]] = set()
        self.acked: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def attempt(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.attempted.add(key)

    def ack(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.acked.add(key)


def verify(store: Path, ledger: Ledger, *, all_stored: bool = False,
           absent: set[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """Check the store against the ledger; returns counts (``ok`` says whether every invariant held).

    ``all_stored``: after retries every attempted upload must be present; ``absent``: uploads whose
    stream never completed (their last chunk was never sent) and so must not be present.
    """
    with LatentStore(store, readonly=True) as s:
        integrity = s.integrity_check()
        stored = [(c, u) for c, u, _ in s.upload_ids()]
        acked_missing = partial = 0
        for key in ledger.acked:
            got = s.upload(*key)
            z, y = batch_for(*key)
            if got is None:
                acked_missing += 1
            elif not (np.array_equal(got[0], z) and np.array_equal(got[1], y)):
                partial += 1
        stray = [k for k in stored if k not in ledger.attempted]
        for key in stored:
            if key in ledger.attempted and key not in ledger.acked:
                got = s.upload(*key)
                z, y = batch_for(*key)
                if not (np.array_equal(got[0], z) and np.array_equal(got[1], y)):
                    partial += 1
    duplicates = len(stored) - len(set(stored))
    ack_lost = len([k for k in stored if k in ledger.attempted and k not in ledger.acked])
    not_stored = len(ledger.attempted - set(stored)) if all_stored else 0
    present_but_cut = len(absent & set(stored))
    ok = (integrity == "ok" and acked_missing == 0 and partial == 0 and not stray and duplicates == 0
          and not_stored == 0 and present_but_cut == 0)
    return {"ok": ok, "integrity": integrity, "stored": len(stored), "acked": len(ledger.acked),
            "attempted": len(ledger.attempted), "acked_missing": acked_missing, "partial": partial,
            "stray": len(stray), "duplicates": duplicates, "ack_lost": ack_lost, "not_stored": not_stored,
            "unacked_present": present_but_cut}


def upload_once(c: ServiceProbe, ledger: Ledger, upload_id: str, chunk_bytes: int = 512) -> pb.UploadAck:
    key = (c.client_id, upload_id)
    z, y = batch_for(*key)
    ledger.attempt(key)
    ack = c.upload(z, y, F32, upload_id=upload_id, chunk_bytes=chunk_bytes)
    ledger.ack(key)
    return ack


def retry_all(address: str, tokens: dict[str, str], ledger: Ledger, prefix: str = "") -> int:
    """Re-send every attempted upload (whose id starts with ``prefix``) with its upload_id; returns how
    many were duplicates."""
    dups = 0
    for cid, uid in sorted(k for k in ledger.attempted if k[1].startswith(prefix)):
        with ServiceProbe(address, cid, timeout=30) as c:
            c.token = tokens[cid]
            dups += bool(upload_once(c, ledger, uid).duplicate)
    return dups


def register(address: str, client_id: str, token: str = "") -> str:
    with ServiceProbe(address, client_id, timeout=30) as c:
        c.token = token
        wait_ready(c.channel)
        return c.register(DIM, pb.FLOAT32, range(4))


def wait_ready(channel: grpc.Channel, timeout: float = 20.0) -> None:
    grpc.channel_ready_future(channel).result(timeout=timeout)


# -- faults ----------------------------------------------------------------------------------------
def fault_kill9(work: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """kill -9 of the server at a random moment while 4 clients upload, then restart and retry."""
    store = work / "kill9"
    ledger, tokens, records = Ledger(), {}, []
    srv = Server(store)
    for k in range(4):
        tokens[f"k9-{k}"] = register(srv.address, f"k9-{k}")
    for r in range(rounds):
        stop = threading.Event()

        def pump(cid: str) -> None:
            with ServiceProbe(srv.address, cid, timeout=10) as c:
                c.token = tokens[cid]
                i = 0
                while not stop.is_set():
                    try:
                        upload_once(c, ledger, f"r{r}-{i}")
                    except grpc.RpcError:
                        return
                    i += 1

        threads = [threading.Thread(target=pump, args=(cid,)) for cid in tokens]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.1, 0.8))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(30)
        after_kill = verify(store, ledger)
        srv = Server(store)
        dups = retry_all(srv.address, tokens, ledger, prefix=f"r{r}-")
        after_retry = verify(store, ledger, all_stored=True)
        records.append({"round": r, "after_kill": after_kill, "after_retry": after_retry, "retry_duplicates": dups})
    srv.kill()
    return _summary("kill -9 server mid-upload, restart", records,
                    lambda x: x["after_kill"]["ok"] and x["after_retry"]["ok"],
                    ack_lost=sum(x["after_kill"]["ack_lost"] for x in records),
                    acked=records[-1]["after_retry"]["acked"] if records else 0)


CHILD_CLIENT = r"""
import os, sys, time
sys.path.insert(0, os.environ["RELIABILITY_DIR"])
import reliability as rel
from protos import codec
from server.probe import ServiceProbe
c = ServiceProbe(os.environ["ADDR"], os.environ["CID"], timeout=60)
c.token = os.environ["TOKEN"]
uid = os.environ["UID"]
z, y = rel.batch_for(c.client_id, uid)
payload = codec.build_payload(codec.pack_latents(z, rel.pb.FLOAT32), y)
header = c.header(payload, len(y), rel.DIM, rel.F32, uid, 64)
msgs = list(rel.upload_messages(header, payload, 64))
def stream():
    print("streaming", flush=True)
    for m in msgs[:-1]:
        yield m
        time.sleep(0.002)
    print("sent-all-but-last", flush=True)
    time.sleep(600)          # killed before the last chunk: this upload must never be stored
    yield msgs[-1]
c.stub.Upload(stream(), timeout=600)
"""


def fault_client_kill(work: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """A client process SIGKILLed at a random moment of its stream (before its last chunk)."""
    store = work / "clientkill"
    srv = Server(store)
    ledger, records = Ledger(), []
    token = register(srv.address, "ck")
    env = dict(os.environ, PYTHONPATH=str(ROOT), RELIABILITY_DIR=str(Path(__file__).parent), ADDR=srv.address,
               CID="ck", TOKEN=token)
    cut: set[tuple[str, str]] = set()
    with ServiceProbe(srv.address, "ck", timeout=20) as good:
        good.token = token
        for r in range(rounds):
            uid = f"cut-{r}"
            ledger.attempt(("ck", uid))
            cut.add(("ck", uid))
            child = subprocess.Popen([sys.executable, "-c", CHILD_CLIENT], env={**env, "UID": uid}, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            child.stdout.readline()                       # its stream has started ...
            time.sleep(rng.uniform(0.0, 0.25))            # ... and takes ~0.15 s to send all but its last chunk
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            upload_once(good, ledger, f"ok-{r}")           # the server still serves this client
            records.append({"round": r, "check": verify(store, ledger, absent=cut), "alive": srv.alive()})
    srv.kill()
    return _summary("client killed mid-stream", records, lambda x: x["check"]["ok"] and x["alive"])


def fault_stall(work: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """A client that stops sending after a random number of chunks: ended by the idle deadline."""
    store = work / "stall"
    srv = Server(store, "--idle-timeout-seconds", "0.5", "--header-timeout-seconds", "0.5")
    ledger, records, cut = Ledger(), [], set()
    token = register(srv.address, "st")
    with ServiceProbe(srv.address, "st", timeout=20) as c:
        c.token = token
        for r in range(rounds):
            uid = f"stall-{r}"
            z, y = batch_for("st", uid)
            payload = codec.build_payload(codec.pack_latents(z, pb.FLOAT32), y)
            msgs = list(upload_messages(c.header(payload, len(y), DIM, F32, uid, 64), payload, 64))
            k = rng.randrange(0, len(msgs))              # stall after the header and k-1 chunks (0: nothing)
            release = threading.Event()

            def stalled():
                yield from msgs[:k]
                release.wait(30)

            ledger.attempt(("st", uid))
            cut.add(("st", uid))
            t0 = time.monotonic()
            call = c.stub.Upload.future(stalled(), timeout=30)
            upload_once(c, ledger, f"ok-{r}")             # others are served meanwhile
            code = call.exception(timeout=10).code()
            took = time.monotonic() - t0
            release.set()
            records.append({"round": r, "chunks_sent": k, "code": code.name, "ended_after_s": round(took, 2),
                            "check": verify(store, ledger, absent=cut)})
    srv.kill()
    return _summary("stalled client", records,
                    lambda x: x["check"]["ok"] and x["code"] == "DEADLINE_EXCEEDED" and x["ended_after_s"] < 3)


@contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def can_mount() -> str:
    """'' if size-limited filesystems can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (mount -t tmpfs)"
    probe = Path(tempfile.mkdtemp(prefix="rel-probe-"))
    try:
        with tmpfs(probe, 1 << 20):
            pass
        return ""
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"mount failed: {exc}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def fault_disk_full(work: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """The store's filesystem fills up at a random point; then space is freed and retries complete."""
    why = can_mount()
    if why:
        return {"fault": "disk full (size-limited tmpfs)", "rounds": 0, "passed": 0, "skipped": why}
    records = []
    for r in range(rounds):
        with tmpfs(work / f"full-{r}", 6 << 20) as mnt:
            filler = mnt / "filler"
            filler.write_bytes(b"\0" * rng.randrange(1 << 20, 4 << 20))   # where it fills up is random
            store = mnt / "store"
            srv = Server(store)
            ledger, codes = Ledger(), []
            cid = "df"
            token = register(srv.address, cid)
            with ServiceProbe(srv.address, cid, timeout=20) as c:
                c.token = token
                for i in range(2000):
                    try:
                        upload_once(c, ledger, f"u{i}", chunk_bytes=4096)
                    except grpc.RpcError as exc:
                        codes.append(exc.code().name)
                        if len(codes) >= 3:
                            break
                full_check = verify(store, ledger)
                filler.unlink()
                alive = srv.alive()
            dups = retry_all(srv.address, {cid: token}, ledger) if alive else -1
            after = verify(store, ledger, all_stored=True)
            srv.kill()
        records.append({"round": r, "codes": sorted(set(codes)), "when_full": full_check, "after_retry": after,
                        "alive": alive, "retry_duplicates": dups})
    return _summary("disk full (size-limited tmpfs)", records,
                    lambda x: x["alive"] and x["when_full"]["ok"] and x["after_retry"]["ok"]
                    and set(x["codes"]) <= {"RESOURCE_EXHAUSTED", "UNAVAILABLE"} and x["codes"] != [])


LINK_CLIENT = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["RELIABILITY_DIR"])
import grpc
import reliability as rel
from server.probe import ServiceProbe
out = open(os.environ["OUT"], "a", buffering=1)
stop = os.environ["STOP"]
c = ServiceProbe(os.environ["ADDR"], os.environ["CID"], timeout=2)
c.token = os.environ["TOKEN"]
i = 0
while not os.path.exists(stop):
    uid = f"n{i}"
    z, y = rel.batch_for(c.client_id, uid)
    out.write(json.dumps(["attempt", uid]) + "\n")
    while True:                      # retry with the same upload_id until acknowledged
        try:
            ack = c.upload(z, y, rel.F32, upload_id=uid, chunk_bytes=512)
            out.write(json.dumps(["ack", uid, ack.duplicate]) + "\n")
            break
        except grpc.RpcError as exc:
            out.write(json.dumps(["error", uid, exc.code().name]) + "\n")
            time.sleep(0.2)
    i += 1
"""


def can_netns() -> str:
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2 (apt-get install -y iproute2)"
    return ""


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def fault_link_cut(work: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """A veth link between two namespaces goes down at random moments while a client uploads."""
    why = can_netns()
    if why:
        return {"fault": "link cut (veth between namespaces)", "rounds": 0, "passed": 0, "skipped": why}
    tag = f"{os.getpid() % 100000}"
    ns_s, ns_c, veth_s, veth_c = f"rel-s{tag}", f"rel-c{tag}", f"rs{tag}", f"rc{tag}"
    srv = None
    try:
        _ip("netns", "add", ns_s)
        _ip("netns", "add", ns_c)
        _ip("link", "add", veth_s, "type", "veth", "peer", "name", veth_c)
        _ip("link", "set", veth_s, "netns", ns_s)
        _ip("link", "set", veth_c, "netns", ns_c)
        for ns, dev, addr in ((ns_s, veth_s, "10.213.0.1/30"), (ns_c, veth_c, "10.213.0.2/30")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        store = work / "link"
        srv = Server(store, "--insecure", host="10.213.0.1", netns=ns_s)
        out, stop = work / "link-client.jsonl", work / "link-client.stop"
        stop.unlink(missing_ok=True)
        token_file = work / "link-token"
        reg = ("import sys; sys.path.insert(0, %r); import reliability as rel; "
               "open(%r, 'w').write(rel.register(%r, 'lk'))" % (str(Path(__file__).parent), str(token_file),
                                                                  srv.address))
        env = dict(os.environ, PYTHONPATH=str(ROOT), RELIABILITY_DIR=str(Path(__file__).parent))
        subprocess.run(["ip", "netns", "exec", ns_c, sys.executable, "-c", reg], env=env, cwd=ROOT, check=True,
                       timeout=60)
        env.update(ADDR=srv.address, CID="lk", TOKEN=token_file.read_text(), OUT=str(out), STOP=str(stop))
        client = subprocess.Popen(["ip", "netns", "exec", ns_c, sys.executable, "-c", LINK_CLIENT], env=env,
                                  cwd=ROOT, stderr=subprocess.DEVNULL)
        records = []
        time.sleep(1.0)
        for r in range(rounds):
            time.sleep(rng.uniform(0.1, 0.6))
            _ip("-n", ns_c, "link", "set", veth_c, "down")
            down = rng.uniform(0.3, 1.5)
            time.sleep(down)
            _ip("-n", ns_c, "link", "set", veth_c, "up")
            records.append({"round": r, "down_s": round(down, 2)})
        time.sleep(2.5)                               # let the last retry through
        stop.write_text("stop")
        client.wait(60)
        ledger, errors, dup_acks = Ledger(), {}, 0
        for line in out.read_text().splitlines():
            ev = json.loads(line)
            key = ("lk", ev[1])
            if ev[0] == "attempt":
                ledger.attempt(key)
            elif ev[0] == "ack":
                ledger.ack(key)
                dup_acks += bool(ev[2])
            else:
                errors[ev[2]] = errors.get(ev[2], 0) + 1
        check = verify(store, ledger, all_stored=True)
        for rec in records:
            rec["check"] = check
        return {**_summary("link cut (veth between namespaces)", records, lambda x: x["check"]["ok"]),
                "client_errors": errors, "retry_duplicates": dup_acks, "acked": len(ledger.acked)}
    finally:
        if srv is not None:
            srv.kill()
        for ns in (ns_s, ns_c):
            _ip("netns", "del", ns, check=False)


def _summary(name: str, records: list[dict], passed: Callable[[dict], bool], **extra: Any) -> dict[str, Any]:
    return {"fault": name, "rounds": len(records), "passed": sum(bool(passed(x)) for x in records), **extra,
            "records": records}


# -- hostile input: a hypothesis fuzzer ------------------------------------------------------------
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def store_fingerprint(address: str) -> tuple:
    with ServiceProbe(address, "observer", timeout=20) as c:
        st = c.status(ADMIN)
    return (st.total_rows, tuple((x.client_id, x.rows, x.uploads, tuple(x.label_set)) for x in st.clients),
            st.latent_dim)


def fuzz(address: str, seconds: float, seed: int = 0, victim: tuple[str, str] | None = None) -> dict[str, Any]:
    """Random and mutated messages and raw bytes at every RPC for ``seconds``; returns the code counts.

    ``victim`` = (client_id, token) of a registered client: mutated uploads reuse its real id and token
    but always carry a wrong CRC or a broken shape, so nothing may be stored.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    channel = grpc.insecure_channel(address)
    raw = {name: channel.unary_unary(METHOD + name, request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
           for name in ("Register", "Classify", "Status", "TrainClassifier", "RevokeTokens")}
    raw_upload = channel.stream_unary(METHOD + "Upload", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
    counts: dict[str, int] = {}
    bad: list[str] = []
    vid, vtok = victim or ("", "")

    def call(fn, arg, what: str) -> None:
        try:
            fn(arg, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            if code in BAD_CODES:
                bad.append(f"{what}: {code.name} {exc.details()}")
        counts[code.name] = counts.get(code.name, 0) + 1

    text = st.text(max_size=80)
    ints = st.integers(min_value=0, max_value=2**32 - 1)
    qz = st.builds(pb.Quantization, dtype=st.integers(0, 6),
                   scale=st.lists(st.floats(allow_nan=True, width=32), max_size=10),
                   zero_point=st.lists(st.floats(allow_nan=True, width=32), max_size=10))
    ident = st.one_of(text, st.just(vid), st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True))
    register_req = st.builds(pb.RegisterRequest, client_id=ident, latent_dim=ints, dtype=st.integers(0, 6),
                             label_set=st.lists(st.integers(-2**31, 2**31 - 1), max_size=20),
                             enrollment_secret=text, token=text, admin_token=text)
    header = st.builds(pb.UploadHeader, upload_id=text, client_id=ident, token=st.one_of(text, st.just(vtok)),
                       num_rows=ints, latent_dim=ints, quantization=qz, total_chunks=ints, payload_crc32=ints,
                       payload_bytes=st.integers(0, 2**64 - 1))
    chunk = st.builds(pb.UploadChunk, seq=ints, data=st.binary(max_size=512))
    message = st.one_of(
        st.tuples(st.just("Register"), register_req),
        st.tuples(st.just("Classify"), st.builds(pb.ClassifyRequest, client_id=ident,
                                                 token=st.one_of(text, st.just(vtok)), num_rows=ints,
                                                 latent_dim=ints, quantization=qz, latents=st.binary(max_size=256))),
        st.tuples(st.just("Status"), st.builds(pb.StatusRequest, client_id=ident, token=text, admin_token=text)),
        st.tuples(st.just("TrainClassifier"), st.builds(pb.TrainClassifierRequest, admin_token=text,
                                                        config_toml=text)),
        st.tuples(st.just("RevokeTokens"), st.builds(pb.RevokeTokensRequest, client_id=ident, token=text,
                                                     admin_token=text, all=st.booleans())),
    )
    upload_stream = st.lists(st.one_of(st.builds(lambda h: pb.UploadRequest(header=h), header),
                                       st.builds(lambda c: pb.UploadRequest(chunk=c), chunk),
                                       st.just(pb.UploadRequest())), max_size=6)
    raw_bytes = st.binary(max_size=300)

    def mutated_upload(data) -> list[bytes]:
        """A well-formed upload of the victim with one field broken (always a wrong CRC at least)."""
        rows = data.draw(st.integers(1, 30))
        z = np.zeros((rows, DIM), np.float32)
        payload = codec.build_payload(codec.pack_latents(z, pb.FLOAT32), np.zeros(rows, int))
        h = pb.UploadHeader(upload_id=f"fz{data.draw(st.integers(0, 10**9))}", client_id=vid, token=vtok,
                            num_rows=rows, latent_dim=DIM, quantization=F32, total_chunks=1,
                            payload_crc32=(codec.crc32(payload) + data.draw(st.integers(1, 2**31))) % 2**32,
                            payload_bytes=len(payload))
        field = data.draw(st.sampled_from(["none", "num_rows", "latent_dim", "total_chunks", "payload_bytes"]))
        if field != "none":
            setattr(h, field, data.draw(ints))
        body = bytearray(payload)
        if body and data.draw(st.booleans()):
            body[data.draw(st.integers(0, len(body) - 1))] ^= 0xFF
        msgs = [pb.UploadRequest(header=h).SerializeToString(),
                pb.UploadRequest(chunk=pb.UploadChunk(seq=0, data=bytes(body))).SerializeToString()]
        if data.draw(st.booleans()):   # flip one byte of the serialized stream too
            i = data.draw(st.integers(0, 1))
            if msgs[i]:
                b = bytearray(msgs[i])
                b[data.draw(st.integers(0, len(b) - 1))] ^= data.draw(st.integers(1, 255))
                msgs[i] = bytes(b)
        return msgs

    @settings(max_examples=50, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data) -> None:
        kind = data.draw(st.sampled_from(["message", "upload", "raw", "raw_upload", "mutated"]))
        if kind == "message":
            name, msg = data.draw(message)
            call(raw[name], msg.SerializeToString(), name)
        elif kind == "raw":
            name = data.draw(st.sampled_from(sorted(raw)))
            call(raw[name], data.draw(raw_bytes), f"{name} raw")
        elif kind == "upload":
            call(raw_upload, iter([m.SerializeToString() for m in data.draw(upload_stream)]), "Upload")
        elif kind == "raw_upload":
            call(raw_upload, iter(data.draw(st.lists(raw_bytes, max_size=4))), "Upload raw")
        elif vid:
            call(raw_upload, iter(mutated_upload(data)), "Upload mutated")

    t0 = time.monotonic()
    runs = 0
    while time.monotonic() - t0 < seconds:
        hseed(seed + runs)(one)()
        runs += 1
    channel.close()
    return {"seconds": round(time.monotonic() - t0, 1), "requests": sum(counts.values()), "codes": counts,
            "bad": bad[:20], "n_bad": len(bad)}


def fuzz_run(work: Path, seconds: float, seed: int) -> dict[str, Any]:
    srv = Server(work / "fuzz", "--enrollment-secret", "fuzz-enrollment-secret")
    try:
        with ServiceProbe(srv.address, "victim", timeout=20) as c:
            wait_ready(c.channel)
            token = c.register(DIM, pb.FLOAT32, range(4), enrollment_secret="fuzz-enrollment-secret")
            c.upload(np.ones((5, DIM), np.float32), np.zeros(5, int), F32, upload_id="before")
        before = store_fingerprint(srv.address)
        result = fuzz(srv.address, seconds, seed, victim=("victim", token))
        result["alive"] = srv.alive()
        result["store_unchanged"] = result["alive"] and store_fingerprint(srv.address) == before
        with ServiceProbe(srv.address, "victim", timeout=20) as c:   # the real client still works
            c.token = token
            result["victim_ok"] = c.status().clients[0].rows == 5
    finally:
        srv.kill()
    result["ok"] = result["alive"] and result["store_unchanged"] and result["n_bad"] == 0 and result["victim_ok"]
    return result


# -- load ------------------------------------------------------------------------------------------
async def _load_clients(address: str, n: int, seconds: float, rows: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    values = rng.integers(-128, 128, size=(rows, 32))
    labels = rng.integers(0, 10, rows)
    q = pb.Quantization(dtype=pb.INT8, scale=[0.05])
    payload = codec.build_payload(codec.pack_latents(values, pb.INT8), labels)
    # a local subchannel pool per channel: each client has its own TCP connection (gRPC would share one)
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(n)]
    stubs = [pb_grpc.LatentServiceStub(ch) for ch in channels]
    tokens = []
    for k, stub in enumerate(stubs):
        resp = await stub.Register(pb.RegisterRequest(client_id=f"load-{n}-{k}", latent_dim=32, dtype=pb.INT8,
                                                      label_set=list(range(10))), timeout=60)
        tokens.append(resp.token)
    latencies: list[float] = []
    errors: list[str] = []
    start = asyncio.Event()
    deadline = [0.0]

    async def client(k: int) -> None:
        await start.wait()
        i = 0
        while time.perf_counter() < deadline[0]:
            header = pb.UploadHeader(upload_id=f"u{i}", client_id=f"load-{n}-{k}", token=tokens[k], num_rows=rows,
                                     latent_dim=32, quantization=q, total_chunks=1,
                                     payload_crc32=codec.crc32(payload), payload_bytes=len(payload))
            t = time.perf_counter()
            try:
                await stubs[k].Upload(iter(list(upload_messages(header, payload, 1 << 20))), timeout=60)
                latencies.append(time.perf_counter() - t)
            except grpc.RpcError as exc:
                errors.append(exc.code().name)
            i += 1

    tasks = [asyncio.create_task(client(k)) for k in range(n)]
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    dt = time.perf_counter() - t0
    for ch in channels:
        await ch.close()
    lat = np.asarray(latencies) * 1e3
    return {"clients": n, "seconds": round(dt, 2), "uploads": len(latencies), "errors": len(errors),
            "error_codes": sorted(set(errors)), "uploads_per_s": len(latencies) / dt,
            "rows_per_s": len(latencies) * rows / dt, "payload_bytes": len(payload),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None}


def load_level(work: Path, n: int, seconds: float, rows: int = 64) -> dict[str, Any]:
    srv = Server(work / f"load-{n}", "--store-sync", "full")
    try:
        with ServiceProbe(srv.address, "warm") as c:
            wait_ready(c.channel)
        before = proc_stat(srv.pid)
        peak = dict(before)
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.2):
                s = proc_stat(srv.pid)
                peak["rss"], peak["fds"] = max(peak["rss"], s["rss"]), max(peak["fds"], s["fds"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(_load_clients(srv.address, n, seconds, rows))
        sampling.set()
        sampler.join()
        time.sleep(1.0)
        after = proc_stat(srv.pid)
        with LatentStore(srv.store, readonly=True) as s:
            result["stored_uploads"] = len(s.upload_ids())
            result["integrity"] = s.integrity_check()
    finally:
        srv.kill()
    result.update(rss_before_mb=before["rss"] / 2**20, rss_peak_mb=peak["rss"] / 2**20,
                  rss_after_mb=after["rss"] / 2**20, fds_before=before["fds"], fds_peak=peak["fds"],
                  fds_after=after["fds"])
    return result


def ingest_vs_ceiling(work: Path, seconds: float) -> dict[str, Any]:
    """One client streaming 1.1 MB INT8 uploads vs serialize+parse of the same messages (same run)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest import make_payload, protobuf_ceiling

    values, labels, q, payload = make_payload(16384, 64, pb.INT8)
    chunk = 1 << 20
    ceiling = protobuf_ceiling(payload, len(labels), 64, q, chunk, seconds)
    srv = Server(work / "ingest", "--store-sync", "full")
    try:
        with ServiceProbe(srv.address, "ingest", timeout=120) as c:
            wait_ready(c.channel)
            c.register(64, pb.INT8, range(10))
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 3:
                c.upload_payload(payload, len(labels), 64, q, upload_id=f"i{n}", chunk_bytes=chunk)
                n += 1
            dt = time.perf_counter() - t0
    finally:
        srv.kill()
    mbps = n * len(payload) / dt / 1e6
    return {"payload_bytes": len(payload), "uploads": n, "service_mb_per_s": mbps,
            "ceiling_mb_per_s": ceiling["mb_per_s"], "fraction_of_ceiling": mbps / ceiling["mb_per_s"]}


# -- the command -----------------------------------------------------------------------------------
FAULTS = {"kill9": fault_kill9, "client_kill": fault_client_kill, "stall": fault_stall,
          "disk_full": fault_disk_full, "link_cut": fault_link_cut}


def table(report: dict[str, Any]) -> str:
    lines = ["load (loopback, INT8 uploads of 64 x 32, fsync per commit)",
             f"  {'clients':>7} {'uploads/s':>10} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
             f"{'RSS MB before/peak/after':>25} {'fds before/peak/after':>22}"]
    for r in report.get("load", []):
        lines.append(f"  {r['clients']:>7} {r['uploads_per_s']:>10.0f} {r['rows_per_s']:>9.0f} {r['p50_ms']:>8.1f} "
                     f"{r['p99_ms']:>8.1f} {r['errors']:>6} "
                     f"{r['rss_before_mb']:>8.0f}/{r['rss_peak_mb']:.0f}/{r['rss_after_mb']:.0f}{'':>8}"
                     f"{r['fds_before']:>6}/{r['fds_peak']}/{r['fds_after']}")
    if "ingest" in report:
        i = report["ingest"]
        lines.append(f"  one client, {i['payload_bytes'] / 1e6:.1f} MB uploads: {i['service_mb_per_s']:.0f} MB/s = "
                     f"{100 * i['fraction_of_ceiling']:.0f}% of the protobuf ceiling ({i['ceiling_mb_per_s']:.0f} MB/s)")
    lines += ["faults (each round: integrity, acked present + identical, nothing stray/partial, no duplicates)",
              f"  {'fault':<38} {'rounds':>6} {'passed':>6}  notes"]
    for f in report.get("faults", []):
        note = f.get("skipped", "")
        if "ack_lost" in f:
            note = f"acks {f['acked']}, commits whose ack was lost {f['ack_lost']} (retry: duplicate)"
        if "client_errors" in f:
            note = f"acks {f['acked']}, client errors {f['client_errors']}, duplicate acks on retry {f['retry_duplicates']}"
        lines.append(f"  {f['fault']:<38} {f['rounds']:>6} {f['passed']:>6}  {note}")
    if "fuzz" in report:
        z = report["fuzz"]
        codes = ", ".join(f"{k} {v}" for k, v in sorted(z["codes"].items()))
        lines += [f"fuzz ({z['seconds']:.0f} s, {z['requests']} requests): alive {z['alive']}, store unchanged "
                  f"{z['store_unchanged']}, UNKNOWN/INTERNAL {z['n_bad']}", f"  codes: {codes}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[100, 500])
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each load level")
    p.add_argument("--rounds", type=int, default=20, help="rounds of each fault")
    p.add_argument("--fuzz-seconds", type=float, default=60.0)
    p.add_argument("--faults", nargs="+", default=list(FAULTS), choices=list(FAULTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    p.add_argument("--out", default="runs/reliability")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.rounds, args.fuzz_seconds = [20], 3.0, 2, 10.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"command": "python benchmarks/reliability.py " + " ".join(argv or sys.argv[1:]),
                              "seed": args.seed, "cpus": os.cpu_count()}
    try:
        from tqdm import tqdm

        steps = [("load", n) for n in args.clients] + [("ingest", 0)] + [("fault", f) for f in args.faults] + \
            [("fuzz", 0)]
        report["load"], report["faults"] = [], []
        for kind, what in tqdm(steps, desc="reliability", unit="part"):
            if kind == "load":
                report["load"].append(load_level(work, what, args.seconds))
            elif kind == "ingest":
                report["ingest"] = ingest_vs_ceiling(work, max(args.seconds / 2, 2.0))
            elif kind == "fault":
                report["faults"].append(FAULTS[what](work, args.rounds, rng))
            else:
                report["fuzz"] = fuzz_run(work, args.fuzz_seconds, args.seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"JSON: {out / 'report.json'}")
    ok = all(r["errors"] == 0 for r in report["load"]) and \
        all(f["passed"] == f["rounds"] for f in report["faults"]) and report["fuzz"]["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
