"""Build and run the gRPC server: LatentService + grpc.health.v1 + server reflection, optional TLS.

The server is grpc.aio on an event loop in its own thread (see server/service.py for why), so
``start_server(cfg)`` returns a handle usable from ordinary threaded code (tests, the fleet) and
``serve(cfg)`` blocks until SIGTERM/SIGINT. Shutdown is bounded: health flips to NOT_SERVING, new
RPCs are refused, in-flight RPCs get ``grace_seconds`` to finish and are then cancelled (a stalled or
garbled stream cannot hold it up), a training child is killed, running commits complete (SQLite
transactions are short), and the store is closed. ``serve`` also arms a watchdog that exits the
process if all of that has not happened within grace + 10 s: every acknowledged commit is already
durable, so a hard exit loses nothing acknowledged.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.memory import keep_heap_warm
from protos import latent_service_pb2 as pb
from server.config import ServerConfig, is_loopback
from server.service import LatentService
from server.store import LatentStore

log = logging.getLogger("analog_edge.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LatentService"].full_name
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s [%(process)d]: %(message)s"
WATCHDOG_MARGIN_S = 10.0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (not the stream current at setup), so a
    command run in-process (tests capture and close stderr) leaves no handler on a closed file."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str = "INFO") -> None:
    """Timestamped log lines of the project's loggers (``analog_edge.*``) on stderr (idempotent);
    third-party loggers are left as they are."""
    root = logging.getLogger("analog_edge")
    root.propagate = False
    if not any(getattr(h, "_analog_edge", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        handler._analog_edge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def _credentials(cfg: ServerConfig) -> grpc.ServerCredentials:
    key = Path(cfg.tls_key).read_bytes()  # type: ignore[arg-type]
    cert = Path(cfg.tls_cert).read_bytes()  # type: ignore[arg-type]
    if cfg.tls_client_ca:
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=Path(cfg.tls_client_ca).read_bytes(),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials([(key, cert)])


@dataclass
class ServerHandle:
    """A running server; ``stop(grace)`` is idempotent and returns once the store is closed."""

    server: grpc.aio.Server
    port: int
    host: str
    store: LatentStore
    service: LatentService
    health: health.aio.HealthServicer
    executor: futures.ThreadPoolExecutor
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    tls: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        if self._stopped.is_set():
            self._done.wait()
            return
        self._stopped.set()
        grace = 0.0 if grace is None else float(grace)
        log.info("shutting down: refusing new RPCs, %s s grace for in-flight ones", grace)

        async def _stop() -> None:
            await self.health.enter_graceful_shutdown()
            try:
                await asyncio.wait_for(self.server.stop(grace), grace + 2.0)
            except asyncio.TimeoutError:
                log.warning("server stop exceeded its grace period; cancelling what is left")

        try:
            self.service.stop_training()
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(grace + 5.0)
        except (futures.TimeoutError, RuntimeError) as exc:
            log.warning("server stop: %s", exc or type(exc).__name__)
        finally:
            self.service.stop_training()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5.0)
            self.executor.shutdown(wait=True, cancel_futures=True)   # running commits complete first
            self.store.close()
            self._done.set()
            log.info("server stopped; store closed")

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def start_server(cfg: ServerConfig) -> ServerHandle:
    """Open the store, bind ``cfg.host:cfg.port`` (0 = a free port) and start serving."""
    store = LatentStore(cfg.store, sync=cfg.store_sync)
    executor = futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="rpc")
    service = LatentService(cfg, store, executor)
    loop = asyncio.new_event_loop()
    ready: futures.Future = futures.Future()

    async def _build():
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", max(cfg.max_message_bytes, 16 << 20)),
            ("grpc.so_reuseport", 0),  # a port is owned by one server; tests rely on port uniqueness
            # a peer that vanishes without closing (a cut link) is noticed by keepalive pings
            ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.http2.max_ping_strikes", 0),
            # unread chunks of a stream waiting for the byte budget sit in its HTTP/2 window: keep that
            # window fixed (no BDP growth) so waiting streams hold ~lookahead bytes each, not megabytes
            ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1 << 20),
        ]
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((service.handlers(),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        bind = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
        try:
            port = server.add_secure_port(bind, _credentials(cfg)) if cfg.tls else server.add_insecure_port(bind)
        except RuntimeError as exc:  # gRPC's text ends in advice about its own GRPC_VERBOSITY switch
            raise OSError(f"port: could not bind {bind}: the port is in use or the address is not this "
                          f"machine's (--port 0 picks a free one)") from exc
        if port == 0:
            raise OSError(f"port: could not bind {bind}")
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        return server, port, health_servicer

    def _loop() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready.set_result(loop.run_until_complete(_build()))
        except BaseException as exc:  # noqa: BLE001 -- handed to the starting thread
            ready.set_exception(exc)
            return
        loop.run_forever()

    thread = threading.Thread(target=_loop, name="grpc-aio", daemon=True)
    thread.start()
    try:
        server, port, health_servicer = ready.result(60)
    except BaseException:
        thread.join(5)
        executor.shutdown(wait=False)
        store.close()
        raise
    if not cfg.tls and not is_loopback(cfg.host):
        log.warning("serving WITHOUT TLS on %s (--insecure): tokens travel in clear", cfg.host)
    handle = ServerHandle(server, port, cfg.host, store, service, health_servicer, executor, loop, thread,
                          tls=cfg.tls)
    log.info("LatentService listening on %s (%s), store %s, %d rows from %d clients", handle.address,
             "TLS" if cfg.tls else "insecure", store.db_path, store.count(), len(store.clients()))
    if cfg.port_file:
        tmp = f"{cfg.port_file}.tmp{os.getpid()}"
        Path(tmp).write_text(f"{port}\n")
        os.replace(tmp, cfg.port_file)   # readers never see a half-written file
    return handle


def serve(cfg: ServerConfig) -> int:
    """Run until SIGTERM or SIGINT, then stop within the grace period; the exit code is 0."""
    setup_logging(cfg.log_level)
    if cfg.torch_threads:
        import torch  # on use (start-up time): the service loads torch only to classify

        torch.set_num_threads(cfg.torch_threads)
    if not keep_heap_warm():
        log.info("mallopt unavailable: large buffers are returned to the OS after each upload")
    handle = start_server(cfg)
    done = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not done.wait(0.5):
        pass
    watchdog = threading.Timer(cfg.grace_seconds + WATCHDOG_MARGIN_S, _hard_exit)
    watchdog.daemon = True
    watchdog.start()
    handle.stop(cfg.grace_seconds)
    watchdog.cancel()
    return 0


def _hard_exit() -> None:
    log.error("shutdown did not finish within grace + %.0f s; exiting now (acknowledged commits are durable)",
              WATCHDOG_MARGIN_S)
    logging.shutdown()
    os._exit(3)
