"""The LatentService on grpc.aio: maps validated requests onto the store and the classifier.

Concurrency design (why asyncio): an open stream costs a coroutine, not a thread, so streams that
open and say nothing cannot starve Register/Status of handlers. Blocking work (SQLite, numpy checks,
torch inference) runs in a bounded thread pool and never waits on the network. Each Upload stream
must send its header within ``header_timeout_seconds`` and each chunk within ``idle_timeout_seconds``
(else DEADLINE_EXCEEDED), at most ``max_pending_streams`` streams wait for a header at once (the
oldest is evicted to admit a new one, so silent streams cannot lock real clients out), and
the payload bytes of all uploads in flight share one budget, ``max_inflight_bytes``: an authenticated
upload waits for room (up to the idle timeout) before its chunks are read, then RESOURCE_EXHAUSTED.

Messages arrive as raw bytes and are parsed here, so an undecodable message is INVALID_ARGUMENT
naming the RPC rather than a framework error; any unexpected exception is logged and answered
INTERNAL, never UNKNOWN.

Upload protocol (see protos/latent_service.proto): header first, then chunks seq 0..N-1; the CRC is
computed as chunks arrive, and only a complete, CRC-correct, fully validated payload reaches
``LatentStore.commit_upload`` -- one transaction. A broken or rejected stream stores nothing.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from protos import latent_service_pb2 as pb
from server import validation as v
from server.classifier import checkpoints
from server.classifier.errors import TrainingError, UnknownClient
from server.config import ClassifierConfig, ConfigError, ServerConfig
from server.store import ConflictError, LatentStore, NotAuthorized, QuotaExceeded, StoreError

log = logging.getLogger("analog_edge.server")
SERVICE = "analog_edge.v1.LatentService"
ROOT = Path(__file__).resolve().parents[1]
PENDING_GRACE_S = 1.0       # a stream pending this long may be evicted for a newer one
HARD_PENDING_FACTOR = 8     # a burst of young pending streams beyond 8 x max_pending_streams is refused


def classifier_status(info: dict | None) -> pb.ClassifierStatus:
    if not info:
        return pb.ClassifierStatus(version=0)
    return pb.ClassifierStatus(
        version=int(info["version"]), held_out_accuracy=float(info["held_out_accuracy"]),
        trained_rows=int(info["trained_rows"]), trained_at=str(info["trained_at"]),
        description=str(info.get("description", "")), held_out_rows=int(info.get("held_out_rows", 0)),
        latent_dim=int(info.get("latent_dim", 0)), classes=[int(c) for c in info.get("classes", [])],
        client_conditioning=str(info.get("client_conditioning", "none")),
        anchor_map=str(info.get("anchor_map", "none")))


def _parse(cls, raw: bytes, what: str):
    msg = cls()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise v.invalid(f"{what}: not a valid {cls.DESCRIPTOR.name} message ({exc})") from None
    return msg


class ByteBudget:
    """Server-wide budget of payload bytes held by uploads in flight; waiters are served as room frees."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond: asyncio.Condition | None = None

    def _c(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self, n: int, timeout: float) -> None:
        cond = self._c()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.used + n <= self.limit), timeout)
            except asyncio.TimeoutError:
                raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"header.payload_bytes: {n} bytes do not fit the server's in-flight budget "
                                  f"({self.used} of max_inflight_bytes {self.limit} in use for {timeout:g} s); "
                                  "retry later") from None
            self.used += n

    def release(self, n: int) -> None:
        """Synchronous, so a handler being cancelled cannot skip it; waiters are woken by a task."""
        self.used -= n
        asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        cond = self._c()
        async with cond:
            cond.notify_all()


class LatentService:
    """The RPC handlers; ``handlers()`` returns the generic handler to add to a grpc.aio server."""

    def __init__(self, cfg: ServerConfig, store: LatentStore, pool: futures.ThreadPoolExecutor) -> None:
        self.cfg = cfg
        self.store = store
        self.store_dir = Path(cfg.store)
        self.pool = pool
        self.budget = ByteBudget(cfg.max_inflight_bytes)
        self.pending: collections.OrderedDict[object, tuple[float, asyncio.Event]] = collections.OrderedDict()
        self._training = False
        self._train_proc: subprocess.Popen | None = None
        self._model_lock = threading.Lock()
        self._model = None            # the loaded latest classifier (server.classifier.loading.Classifier)
        self._model_key = None        # latest.json's (mtime, size) when it was loaded

    # -- plumbing ------------------------------------------------------------------------------------
    async def _run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    def _is_admin(self, admin_token: str) -> bool:
        return bool(self.cfg.admin_token) and bool(admin_token) and \
            hmac.compare_digest(admin_token.encode(), self.cfg.admin_token.encode())

    def _check_admin(self, admin_token: str, what: str) -> None:
        if not self.cfg.admin_token:
            raise v.Rejection(grpc.StatusCode.PERMISSION_DENIED,
                              f"{what}: disabled, this server was started without an admin token")
        if not admin_token:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "admin_token: missing, this RPC requires it")
        if not self._is_admin(admin_token):
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "admin_token: wrong")

    def _authenticate(self, client_id: str, token: str, field_prefix: str = ""):
        """Blocking (run in the pool): the client's registration, or a Rejection."""
        v.check_client_id(client_id, f"{field_prefix}client_id")
        if not token:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, f"{field_prefix}token: missing, call Register first")
        client = self.store.client(client_id)
        ok = client is not None and self.store.check_token(client_id, token)
        return v.check_auth(client_id, token, client, ok)

    def _rpc(self, name: str, fn: Callable) -> Callable:
        """Wrap a handler: a Rejection becomes its status, anything unexpected INTERNAL (never UNKNOWN)."""

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await fn(request, context)
            except v.Rejection as rej:
                log.info("%s rejected: %s %s", name, rej.code.name, rej.message)
                await context.abort(rej.code, rej.message)
            except grpc.aio.AbortError:
                raise
            except sqlite3.Error as exc:   # e.g. the disk is full: the transaction rolled back, nothing stored
                full = "full" in str(exc).lower()
                log.warning("%s: store error: %s", name, exc)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.UNAVAILABLE,
                                    f"store: {'the disk is full' if full else 'unavailable'} ({exc}); "
                                    "nothing was stored, retry later")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- the one place every unexpected error is answered
                log.exception("%s failed", name)
                await context.abort(grpc.StatusCode.INTERNAL, f"{name}: internal error ({type(exc).__name__})")

        return handler

    def handlers(self) -> grpc.GenericRpcHandler:
        unary = {"Register": (self.Register, pb.RegisterResponse), "Classify": (self.Classify, pb.ClassifyResponse),
                 "Status": (self.Status, pb.StatusResponse),
                 "TrainClassifier": (self.TrainClassifier, pb.TrainClassifierResponse),
                 "RevokeTokens": (self.RevokeTokens, pb.RevokeTokensResponse)}
        methods = {name: grpc.unary_unary_rpc_method_handler(self._rpc(name, fn),
                                                             response_serializer=resp.SerializeToString)
                   for name, (fn, resp) in unary.items()}
        methods["Upload"] = grpc.stream_unary_rpc_method_handler(
            self._rpc("Upload", self.Upload), response_serializer=pb.UploadAck.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    def _latest_model(self):
        """The newest checkpoint, reloaded when latest.json changes (training runs in another process)."""
        # lazy for start-up time: loading a checkpoint imports torch, which the service needs only once
        # the first Classify arrives
        from server.classifier.loading import load_classifier

        key = checkpoints.latest_key(self.store_dir)
        with self._model_lock:
            if key is None:
                return None
            if key != self._model_key:
                self._model = load_classifier(self.store_dir)
                self._model_key = key
            return self._model

    # -- Register / Status / RevokeTokens ---------------------------------------------------------------
    async def Register(self, raw: bytes, context) -> pb.RegisterResponse:
        req = _parse(pb.RegisterRequest, raw, "Register")
        v.check_register(req, self.cfg)
        admin = self._is_admin(req.admin_token)
        if req.admin_token and not admin:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "admin_token: wrong")
        try:
            token = await self._run(self.store.register, req.client_id, req.latent_dim, req.dtype,
                                    list(req.label_set), token=req.token, admin=admin,
                                    max_tokens=self.cfg.max_tokens_per_client)
        except NotAuthorized as exc:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        except ConflictError as exc:
            raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        log.info("registered client=%s latent_dim=%d dtype=%s labels=%d%s", req.client_id, req.latent_dim,
                 pb.DType.Name(req.dtype), len(req.label_set), " (admin)" if admin else "")
        return pb.RegisterResponse(client_id=req.client_id, token=token)

    async def Status(self, raw: bytes, context) -> pb.StatusResponse:
        req = _parse(pb.StatusRequest, raw, "Status")
        if req.admin_token:
            self._check_admin(req.admin_token, "Status")
            only = None
        elif req.client_id or req.token:
            await self._run(self._authenticate, req.client_id, req.token)
            only = req.client_id
        else:
            only = ""   # anonymous: no client rows

        def build() -> pb.StatusResponse:
            rows = [] if only == "" else self.store.summary()
            anchors = self.store.anchor_counts() if rows else {}
            clients = [pb.ClientStatus(client_id=c.client_id, latent_dim=c.latent_dim, dtype=c.dtype, rows=n,
                                       uploads=u, label_set=list(c.label_set),
                                       anchor_rows=anchors.get(c.client_id, 0))
                       for c, n, u in rows if only is None or c.client_id == only]
            return pb.StatusResponse(clients=clients, total_rows=self.store.count(),
                                     latent_dim=self.store.latent_dim(),
                                     classifier=classifier_status(checkpoints.latest_info(self.store_dir)))

        return await self._run(build)

    async def RevokeTokens(self, raw: bytes, context) -> pb.RevokeTokensResponse:
        req = _parse(pb.RevokeTokensRequest, raw, "RevokeTokens")
        v.check_client_id(req.client_id)
        admin = False
        if req.admin_token:
            self._check_admin(req.admin_token, "RevokeTokens")
            admin = True
        elif not req.token:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "token: missing (or give admin_token)")
        if await self._run(self.store.client, req.client_id) is None:
            raise v.Rejection(grpc.StatusCode.NOT_FOUND, f"client_id: {req.client_id!r} is not registered")
        try:
            n = await self._run(self.store.revoke_tokens, req.client_id, req.token, admin=admin, all_tokens=req.all)
        except NotAuthorized as exc:
            raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        log.info("revoked %d token(s) of client=%s", n, req.client_id)
        return pb.RevokeTokensResponse(revoked=n)

    # -- Upload ----------------------------------------------------------------------------------------
    async def _read(self, context, timeout: float, what: str) -> pb.UploadRequest | None:
        try:
            raw = await asyncio.wait_for(context.read(), timeout)
        except asyncio.TimeoutError:
            raise v.Rejection(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"{what}: nothing arrived within {timeout:g} s; nothing stored") from None
        if raw is grpc.aio.EOF:
            return None
        return _parse(pb.UploadRequest, raw, what)

    async def _read_header(self, context) -> pb.UploadRequest | None:
        """The first message, within header_timeout_seconds. While it waits the stream is "pending";
        when max_pending_streams are pending, the OLDEST is evicted (RESOURCE_EXHAUSTED) if it has been
        silent for PENDING_GRACE_S: a flood of silent streams only evicts itself, while a real client's
        header arrives right after its stream opens, even in a burst of hundreds (a burst is admitted
        up to HARD_PENDING_FACTOR x the cap)."""
        evicted = asyncio.Event()
        key = object()
        now = time.monotonic()
        if len(self.pending) >= self.cfg.max_pending_streams:
            oldest_key, (since, oldest) = next(iter(self.pending.items()))
            if now - since >= PENDING_GRACE_S:     # only a stream silent for a while is evicted ...
                del self.pending[oldest_key]
                oldest.set()
            elif len(self.pending) >= HARD_PENDING_FACTOR * self.cfg.max_pending_streams:
                raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,   # ... a burst beyond this is refused
                                  f"upload: {len(self.pending)} streams are waiting for a header "
                                  f"(max_pending_streams {self.cfg.max_pending_streams}); retry later")
        self.pending[key] = (now, evicted)
        read = asyncio.ensure_future(context.read())
        evict = asyncio.ensure_future(evicted.wait())
        try:
            done, _ = await asyncio.wait({read, evict}, timeout=self.cfg.header_timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.pending.pop(key, None)
            evict.cancel()
            if not read.done():
                read.cancel()
        if read in done:
            raw = read.result()
            return None if raw is grpc.aio.EOF else _parse(pb.UploadRequest, raw, "header")
        if evict in done:
            raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"header: evicted, {self.cfg.max_pending_streams} newer streams are waiting for a "
                              "header (max_pending_streams); send the header as soon as the stream opens")
        raise v.Rejection(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"header: nothing arrived within {self.cfg.header_timeout_seconds:g} s; nothing stored")

    async def Upload(self, _requests, context) -> pb.UploadAck:
        first = await self._read_header(context)
        if first is None:
            raise v.invalid("header: the stream ended before an UploadHeader")
        if first.WhichOneof("kind") != "header":
            raise v.invalid("header: the first message must be an UploadHeader, got "
                            f"{first.WhichOneof('kind') or 'an empty message'}")
        h = first.header
        client = await self._run(self._authenticate, h.client_id, h.token, "header.")
        return await self._upload(h, client, context)

    async def _upload(self, h: pb.UploadHeader, client, context) -> pb.UploadAck:
        if not h.upload_id or not v.UPLOAD_ID_RE.match(h.upload_id):
            raise v.invalid(f"header.upload_id: got {h.upload_id[:80]!r}, must be 1..128 characters of [A-Za-z0-9._:-]")
        prior = await self._run(self.store.find_upload, h.client_id, h.upload_id)
        if prior is not None:
            if prior.payload_crc32 != h.payload_crc32 or prior.rows_stored != h.num_rows:
                raise v.Rejection(grpc.StatusCode.ALREADY_EXISTS,
                                  f"header.upload_id: {h.upload_id!r} was committed with a different payload "
                                  f"({prior.rows_stored} rows, crc {prior.payload_crc32:#010x}); use a new upload_id")
            log.info("upload client=%s id=%s already committed: duplicate ack", h.client_id, h.upload_id)
            return self._ack(prior, duplicate=True)
        expected = v.check_header(h, client, self.cfg)
        await self.budget.acquire(expected, self.cfg.idle_timeout_seconds)
        try:
            return await self._receive(h, client, expected, context)
        finally:
            self.budget.release(expected)

    async def _receive(self, h: pb.UploadHeader, client, expected: int, context) -> pb.UploadAck:
        t_start = time.perf_counter()
        parts: list[bytes] = []
        received = crc = seq = 0
        while True:
            msg = await self._read(context, self.cfg.idle_timeout_seconds, f"chunk {seq}")
            if msg is None:
                break
            kind = msg.WhichOneof("kind")
            if kind != "chunk":
                raise v.invalid(f"chunk: expected chunk {seq}, got {kind or 'an empty message'} "
                                "(the header is sent once, first)")
            chunk = msg.chunk
            if chunk.seq >= h.total_chunks:
                raise v.invalid(f"chunk.seq: got {chunk.seq}, but header.total_chunks is {h.total_chunks}")
            if chunk.seq != seq:
                raise v.invalid(f"chunk.seq: got {chunk.seq}, expected {seq} (chunks arrive in order "
                                f"0..{h.total_chunks - 1}, none missing or repeated)")
            data = chunk.data
            if received + len(data) > expected:
                raise v.invalid(f"chunk.data: chunk {seq} brings the payload past header.payload_bytes ({expected})")
            parts.append(data)
            received += len(data)
            crc = zlib.crc32(data, crc)
            seq += 1
        if seq != h.total_chunks:
            raise v.invalid(f"chunk.seq: received {seq} of header.total_chunks ({h.total_chunks}); "
                            "chunks are missing, nothing stored")
        if received != expected:
            raise v.invalid(f"header.payload_bytes: chunks carried {received} bytes, header says {expected}")
        if crc != h.payload_crc32:
            raise v.invalid(f"header.payload_crc32: got {h.payload_crc32:#010x}, the received payload has "
                            f"{crc:#010x}; resend the upload")
        t_received = time.perf_counter()
        result = await self._run(self._commit, h, client, parts, crc)
        log.info("commit client=%s id=%s rows=%d bytes=%d total=%d%s (receive %.1f ms, check+commit %.1f ms)",
                 h.client_id, h.upload_id, result.rows_stored, expected, result.client_total_rows,
                 " (duplicate)" if result.duplicate else "", 1e3 * (t_received - t_start),
                 1e3 * (time.perf_counter() - t_received))
        return self._ack(result, duplicate=result.duplicate)

    def _commit(self, h: pb.UploadHeader, client, parts: list[bytes], crc: int):
        """Blocking (in the pool): decode and check the payload, then commit it in one transaction."""
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        latent_bytes, labels = v.decode_payload(h, memoryview(payload), client)
        try:
            result = self.store.commit_upload(
                h.client_id, h.upload_id, num_rows=h.num_rows, latent_dim=h.latent_dim,
                quantization=h.quantization, latent_bytes=latent_bytes, labels=labels,
                payload_crc32=crc, max_rows_per_client=self.cfg.max_rows_per_client, anchors=h.anchors)
        except QuotaExceeded as exc:
            raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except StoreError as exc:
            raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except OSError as exc:   # e.g. the disk is full: nothing was committed
            raise v.Rejection(grpc.StatusCode.UNAVAILABLE, f"store: could not write ({exc}); retry later") from None
        if result.duplicate and result.payload_crc32 != crc:
            raise v.Rejection(grpc.StatusCode.ALREADY_EXISTS,
                              f"header.upload_id: {h.upload_id!r} was committed with a different payload")
        return result

    @staticmethod
    def _ack(result, duplicate: bool) -> pb.UploadAck:
        return pb.UploadAck(upload_id=result.upload_id, rows_stored=result.rows_stored, duplicate=duplicate,
                            client_total_rows=result.client_total_rows)

    # -- Classify ----------------------------------------------------------------------------------------
    async def Classify(self, raw: bytes, context) -> pb.ClassifyResponse:
        req = _parse(pb.ClassifyRequest, raw, "Classify")
        client = await self._run(self._authenticate, req.client_id, req.token)
        return await self._run(self._classify, req, client)

    def _classify(self, req: pb.ClassifyRequest, client) -> pb.ClassifyResponse:
        z = v.check_classify(req, client, self.cfg)
        try:
            model = self._latest_model()
        except TrainingError as exc:
            raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        if model is None:
            raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION,
                              "classifier: none trained yet; call TrainClassifier (or analog-edge train-classifier)")
        if z.shape[1] != model.latent_dim:
            raise v.invalid(f"latent_dim: got {z.shape[1]}, the classifier (version {model.version}) "
                            f"takes {model.latent_dim}")
        try:
            probs = model.predict_proba(z, [req.client_id] * z.shape[0],
                                        anchors=lambda cid: self.store.anchor_latents(cid))
        except UnknownClient as exc:  # no adapter head / no anchors for this client
            raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        labels = np.asarray(model.classes)[probs.argmax(axis=1)]
        return pb.ClassifyResponse(labels=labels.tolist(), classes=list(model.classes),
                                   probabilities=probs.astype(np.float32).ravel().tolist(),
                                   classifier_version=model.version)

    # -- TrainClassifier -----------------------------------------------------------------------------------
    async def TrainClassifier(self, raw: bytes, context) -> pb.TrainClassifierResponse:
        req = _parse(pb.TrainClassifierRequest, raw, "TrainClassifier")
        self._check_admin(req.admin_token, "TrainClassifier")
        if len(req.config_toml) > v.MAX_CONFIG_TOML:
            raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"config_toml: {len(req.config_toml)} characters, limit is {v.MAX_CONFIG_TOML}")
        try:
            ccfg = ClassifierConfig.from_toml_text(req.config_toml) if req.config_toml else self.cfg.classifier
        except (ConfigError, TypeError, ValueError) as exc:
            raise v.invalid(f"config_toml: {exc}") from None
        clients = await self._run(self.store.summary)
        labels = {lab for c, _, _ in clients for lab in c.label_set}
        v.check_classifier_config(ccfg, await self._run(self.store.latent_dim), len(labels), len(clients),
                                  self.cfg.max_classifier_bytes)
        if self._training:
            raise v.Rejection(grpc.StatusCode.ABORTED, "classifier: a training run is already in progress; retry later")
        self._training = True
        try:
            log.info("training classifier (%s) on %d rows", ccfg.mode, await self._run(self.store.count))
            out = await self._run(self._train_child, ccfg)
        finally:
            self._training = False
        if "error" in out:
            raise v.Rejection(getattr(grpc.StatusCode, out.get("code", "INTERNAL"), grpc.StatusCode.INTERNAL),
                              out["error"])
        info = out["info"]
        log.info("classifier version %d: held-out accuracy %.4f on %d rows", info["version"],
                 info["held_out_accuracy"], info["held_out_rows"])
        return pb.TrainClassifierResponse(classifier=classifier_status(info))

    def _train_child(self, ccfg: ClassifierConfig) -> dict:
        """Blocking (in the pool): run server.trainer in a child process and return its JSON answer."""
        job = {"store": str(self.store_dir), "config": ccfg.to_dict(), "torch_threads": self.cfg.torch_threads,
               "memory_bytes": self.cfg.train_memory_bytes}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.Popen([sys.executable, "-m", "server.trainer"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        self._train_proc = proc
        try:
            out, err = proc.communicate(json.dumps(job).encode())
        finally:
            self._train_proc = None
        lines = out.decode(errors="replace").strip().splitlines()
        if proc.returncode != 0 or not lines:
            if proc.returncode in (-signal.SIGKILL, -signal.SIGTERM):
                return {"error": "classifier: training was stopped (server shutdown or out of memory)",
                        "code": "ABORTED"}
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            code = "RESOURCE_EXHAUSTED" if "memory" in tail[0].lower() or "alloc" in tail[0].lower() else "INTERNAL"
            return {"error": f"classifier: training process failed (exit {proc.returncode}): {tail[0][:300]}",
                    "code": code}
        return json.loads(lines[-1])

    def stop_training(self) -> None:
        """Shutdown: end a training run at once (its checkpoint is only published when complete)."""
        proc = self._train_proc
        if proc is not None and proc.poll() is None:
            proc.kill()
