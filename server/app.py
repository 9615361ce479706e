"""Build and run the gRPC server: LatentService + grpc.health.v1 + server reflection, optional TLS.

``start_server(cfg)`` returns a handle (in-process use by tests and the fleet); ``serve(cfg)``
blocks until SIGTERM/SIGINT, then shuts down gracefully: health flips to NOT_SERVING, new RPCs are
refused, in-flight RPCs get ``grace_seconds`` to finish, the handler threads are joined (so any
commit in progress completes) and only then is the store closed.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc
from server.config import ServerConfig
from server.service import LatentService
from server.store import LatentStore

log = logging.getLogger("analog_edge.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LatentService"].full_name
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s [%(process)d]: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Timestamped log lines on stderr (idempotent)."""
    root = logging.getLogger()
    if not any(getattr(h, "_analog_edge", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        handler._analog_edge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def keep_heap_warm(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed megabyte-sized buffers in the process heap instead of returning them to the OS.

    Why: by default glibc serves every allocation above ~128 KiB-32 MiB with a fresh mmap and
    unmaps it on free, so each received chunk, parsed message and SQLite blob binding page-faults
    its memory in again. On a VM a page fault is expensive (benchmarks/ingest.py measures the protobuf
    ceiling with and without a warm heap side by side; figures in README.md). The price is up
    to ``trim_threshold`` bytes of freed memory kept resident. Returns False where mallopt is absent.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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

    server: grpc.Server
    port: int
    host: str
    store: LatentStore
    service: LatentService
    health: health.HealthServicer
    executor: futures.ThreadPoolExecutor
    tls: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down: refusing new RPCs, %s s grace for in-flight ones", grace)
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.executor.shutdown(wait=True)   # handler threads finish (commits complete) before close
        self.store.close()
        log.info("server stopped; store closed")

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def start_server(cfg: ServerConfig) -> ServerHandle:
    """Open the store, bind ``cfg.host:cfg.port`` (0 = a free port) and start serving."""
    store = LatentStore(cfg.store, sync=cfg.store_sync)
    service = LatentService(cfg, store)
    executor = futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="rpc")
    options = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", max(cfg.max_message_bytes, 16 << 20)),
        ("grpc.so_reuseport", 0),  # a port is owned by one server; tests rely on port uniqueness
    ]
    server = grpc.server(executor, options=options, maximum_concurrent_rpcs=None)
    pb_grpc.add_LatentServiceServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bind = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
    try:
        if cfg.tls:
            port = server.add_secure_port(bind, _credentials(cfg))
        else:
            port = server.add_insecure_port(bind)
    except RuntimeError as exc:  # gRPC's text ends in advice about its own GRPC_VERBOSITY switch
        store.close()
        raise OSError(f"port: could not bind {bind}: the port is in use or the address is not this "
                      f"machine's (--port 0 picks a free one)") from exc
    if port == 0:
        store.close()
        raise OSError(f"port: could not bind {bind}")
    if not cfg.tls and not _is_loopback(cfg.host):
        log.warning("serving WITHOUT TLS on %s: tokens travel in clear; set tls_cert/tls_key", cfg.host)
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    handle = ServerHandle(server, port, cfg.host, store, service, health_servicer, executor, tls=cfg.tls)
    log.info("LatentService listening on %s (%s), store %s, %d rows from %d clients", handle.address,
             "TLS" if cfg.tls else "insecure", store.db_path, store.count(), len(store.clients()))
    if cfg.port_file:
        tmp = f"{cfg.port_file}.tmp{os.getpid()}"
        Path(tmp).write_text(f"{port}\n")
        os.replace(tmp, cfg.port_file)   # readers never see a half-written file
    return handle


def serve(cfg: ServerConfig) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully; the exit code is 0."""
    setup_logging(cfg.log_level)
    if cfg.torch_threads:
        import torch

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
    handle.stop(cfg.grace_seconds)
    return 0
