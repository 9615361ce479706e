"""The LatentService servicer: maps validated requests onto the store and the classifier.

Upload protocol (see protos/latent_service.proto): header first, then chunks seq 0..N-1. Bytes are
buffered in memory (bounded by max_upload_bytes, checked from the header before any chunk is read),
the CRC is computed incrementally, and only a complete, CRC-correct, fully validated payload reaches
``LatentStore.commit_upload`` -- one transaction. A broken or rejected stream stores nothing.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from pathlib import Path

import grpc
import numpy as np

from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc
from server import validation as v
from server.config import ClassifierConfig, ConfigError, ServerConfig
from server.store import LatentStore, QuotaExceeded, StoreError

log = logging.getLogger("analog_edge.server")


def _abort(context: grpc.ServicerContext, rej: v.Rejection, what: str) -> None:
    log.info("%s rejected: %s %s", what, rej.code.name, rej.message)
    context.abort(rej.code, rej.message)


def classifier_status(info: dict | None) -> pb.ClassifierStatus:
    if not info:
        return pb.ClassifierStatus(version=0)
    return pb.ClassifierStatus(
        version=int(info["version"]), held_out_accuracy=float(info["held_out_accuracy"]),
        trained_rows=int(info["trained_rows"]), trained_at=str(info["trained_at"]),
        description=str(info.get("description", "")), held_out_rows=int(info.get("held_out_rows", 0)),
        latent_dim=int(info.get("latent_dim", 0)), classes=[int(c) for c in info.get("classes", [])],
        client_conditioning=str(info.get("client_conditioning", "none")))


class LatentService(pb_grpc.LatentServiceServicer):
    def __init__(self, cfg: ServerConfig, store: LatentStore) -> None:
        self.cfg = cfg
        self.store = store
        self.store_dir = Path(cfg.store)
        self._train_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._model = None            # the loaded latest classifier (server.classifier.Classifier)
        self._model_key = None        # latest.json's (mtime, size) when it was loaded

    # -- helpers -------------------------------------------------------------------------------------
    def _authenticate(self, client_id: str, token: str, field_prefix: str = ""):
        v.check_client_id(client_id, f"{field_prefix}client_id")
        client = self.store.client(client_id)
        ok = bool(token) and client is not None and self.store.check_token(client_id, token)
        return v.check_auth(client_id, token, client, ok)

    def _latest_model(self):
        """The newest checkpoint, reloaded when latest.json changes (training may run in another process)."""
        from server import classifier as clf

        key = clf.latest_key(self.store_dir)
        with self._model_lock:
            if key is None:
                return None
            if key != self._model_key:
                self._model = clf.load_classifier(self.store_dir)
                self._model_key = key
            return self._model

    # -- RPCs ----------------------------------------------------------------------------------------
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        try:
            v.check_register(request, self.cfg)
            token = self.store.register(request.client_id, request.latent_dim, request.dtype, list(request.label_set))
        except v.Rejection as rej:
            _abort(context, rej, "Register")
        except StoreError as exc:
            _abort(context, v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)), "Register")
        log.info("registered client=%s latent_dim=%d dtype=%s labels=%s", request.client_id, request.latent_dim,
                 pb.DType.Name(request.dtype), sorted(request.label_set))
        return pb.RegisterResponse(client_id=request.client_id, token=token)

    def Upload(self, request_iterator, context: grpc.ServicerContext) -> pb.UploadAck:
        try:
            return self._upload(iter(request_iterator), context)
        except v.Rejection as rej:
            _abort(context, rej, "Upload")
        except grpc.RpcError:
            # The client went away mid-stream: nothing was committed, nothing is left behind.
            log.info("upload stream broken by the client; nothing stored")
            return pb.UploadAck()

    def _upload(self, it, context: grpc.ServicerContext) -> pb.UploadAck:
        first = next(it, None)
        if first is None:
            raise v.invalid("header: the stream ended before an UploadHeader")
        if first.WhichOneof("kind") != "header":
            raise v.invalid("header: the first message must be an UploadHeader, got "
                            f"{first.WhichOneof('kind') or 'an empty message'}")
        h = first.header
        client = self._authenticate(h.client_id, h.token, "header.")
        if not h.upload_id or not v.UPLOAD_ID_RE.match(h.upload_id):
            raise v.invalid(f"header.upload_id: got {h.upload_id[:80]!r}, must be 1..128 characters of [A-Za-z0-9._:-]")
        prior = self.store.find_upload(h.client_id, h.upload_id)
        if prior is not None:
            if prior.payload_crc32 != h.payload_crc32 or prior.rows_stored != h.num_rows:
                raise v.Rejection(grpc.StatusCode.ALREADY_EXISTS,
                                  f"header.upload_id: {h.upload_id!r} was committed with a different payload "
                                  f"({prior.rows_stored} rows, crc {prior.payload_crc32:#010x}); use a new upload_id")
            log.info("upload client=%s id=%s already committed: duplicate ack", h.client_id, h.upload_id)
            return self._ack(prior, duplicate=True)
        expected = v.check_header(h, client, self.cfg)
        t_start = time.perf_counter()
        # Chunks are kept as the bytes objects protobuf handed us (no per-chunk copy into a growing
        # buffer); the CRC runs over each chunk as it arrives, so it overlaps the transfer of the next.
        parts: list[bytes] = []
        received = 0
        crc = 0
        seq = 0
        for msg in it:
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
        if not context.is_active():
            log.info("upload client=%s id=%s cancelled; nothing stored", h.client_id, h.upload_id)
            return pb.UploadAck()
        if seq != h.total_chunks:
            raise v.invalid(f"chunk.seq: received {seq} of header.total_chunks ({h.total_chunks}); "
                            "chunks are missing, nothing stored")
        if received != expected:
            raise v.invalid(f"header.payload_bytes: chunks carried {received} bytes, header says {expected}")
        if crc != h.payload_crc32:
            raise v.invalid(f"header.payload_crc32: got {h.payload_crc32:#010x}, the received payload has "
                            f"{crc:#010x}; resend the upload")
        t_received = time.perf_counter()
        # One chunk (the usual case) is used as is; several are joined once. Latents and labels are
        # then memoryview slices of that one buffer, bound to SQLite without further copies.
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        del parts
        latent_bytes, labels = v.decode_payload(h, memoryview(payload), client)
        t_checked = time.perf_counter()
        try:
            result = self.store.commit_upload(
                h.client_id, h.upload_id, num_rows=h.num_rows, latent_dim=h.latent_dim,
                quantization=h.quantization, latent_bytes=latent_bytes, labels=labels,
                payload_crc32=crc, max_rows_per_client=self.cfg.max_rows_per_client)
        except QuotaExceeded as exc:
            raise v.Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        if result.duplicate and result.payload_crc32 != crc:
            raise v.Rejection(grpc.StatusCode.ALREADY_EXISTS,
                              f"header.upload_id: {h.upload_id!r} was committed with a different payload")
        t_done = time.perf_counter()
        log.info("commit client=%s id=%s rows=%d bytes=%d total=%d%s (receive %.1f ms, check %.1f ms, commit %.1f ms)",
                 h.client_id, h.upload_id, result.rows_stored, expected, result.client_total_rows,
                 " (duplicate)" if result.duplicate else "", 1e3 * (t_received - t_start),
                 1e3 * (t_checked - t_received), 1e3 * (t_done - t_checked))
        return self._ack(result, duplicate=result.duplicate)

    @staticmethod
    def _ack(result, duplicate: bool) -> pb.UploadAck:
        return pb.UploadAck(upload_id=result.upload_id, rows_stored=result.rows_stored, duplicate=duplicate,
                            client_total_rows=result.client_total_rows)

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        from server import classifier as clf

        try:
            client = self._authenticate(request.client_id, request.token)
            z = v.check_classify(request, client, self.cfg)
            model = self._latest_model()
            if model is None:
                raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION,
                                  "classifier: none trained yet; call TrainClassifier (or analog-edge train-classifier)")
            if z.shape[1] != model.latent_dim:
                raise v.invalid(f"latent_dim: got {z.shape[1]}, the classifier (version {model.version}) "
                                f"takes {model.latent_dim}")
            try:
                probs = model.predict_proba(z, [request.client_id] * z.shape[0])
            except clf.UnknownClient as exc:  # an adapter classifier has no head for this client
                raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except v.Rejection as rej:
            _abort(context, rej, "Classify")
        labels = np.asarray(model.classes)[probs.argmax(axis=1)]
        return pb.ClassifyResponse(labels=labels.tolist(), classes=list(model.classes),
                                   probabilities=probs.astype(np.float32).ravel().tolist(),
                                   classifier_version=model.version)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        from server import classifier as clf

        clients = [pb.ClientStatus(client_id=c.client_id, latent_dim=c.latent_dim, dtype=c.dtype, rows=rows,
                                   uploads=uploads, label_set=list(c.label_set))
                   for c, rows, uploads in self.store.summary()]
        return pb.StatusResponse(clients=clients, total_rows=sum(c.rows for c in clients),
                                 classifier=classifier_status(clf.latest_info(self.store_dir)))

    def TrainClassifier(self, request: pb.TrainClassifierRequest,
                        context: grpc.ServicerContext) -> pb.TrainClassifierResponse:
        from server import classifier as clf

        try:
            if self.cfg.admin_token is not None:
                import hmac

                if not request.admin_token:
                    raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "admin_token: missing, this server requires one")
                if not hmac.compare_digest(request.admin_token.encode(), self.cfg.admin_token.encode()):
                    raise v.Rejection(grpc.StatusCode.UNAUTHENTICATED, "admin_token: wrong")
            try:
                ccfg = ClassifierConfig.from_toml_text(request.config_toml) if request.config_toml \
                    else self.cfg.classifier
            except (ConfigError, TypeError) as exc:
                raise v.invalid(f"config_toml: {exc}") from None
            if not self._train_lock.acquire(blocking=False):
                raise v.Rejection(grpc.StatusCode.ABORTED, "classifier: a training run is already in progress")
            try:
                log.info("training classifier (%s) on %d rows", ccfg.mode, self.store.count())
                info = clf.train_classifier(self.store_dir, ccfg)
            except (clf.TrainingError, StoreError) as exc:
                raise v.Rejection(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
            finally:
                self._train_lock.release()
        except v.Rejection as rej:
            _abort(context, rej, "TrainClassifier")
        log.info("classifier version %d: held-out accuracy %.4f on %d rows", info["version"],
                 info["held_out_accuracy"], info["held_out_rows"])
        return pb.TrainClassifierResponse(classifier=classifier_status(info))
