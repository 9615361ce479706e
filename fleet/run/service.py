"""Start, talk to and stop the latent service for one fleet run.

The service runs in-process (`server.app.start_server`) or as a child process (`analog-edge serve`
on a free loopback port, stopped by its pid), or is an external one the devices can reach; the
fleet talks to it only through the gRPC contract (TrainClassifier, Status) with the project's one
service client (`protos.client.LatentClient`, TLS when given), as any other operator tool would.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from common.errors import AnalogEdgeError
from common.validation import ConfigError
from protos import latent_service_pb2 as pb
from protos.client import LatentClient, RetryPolicy, TlsOptions, UploadError
from server.app import start_server
from server.config import ClassifierConfig, ServerConfig

READY_TIMEOUT_S = 60.0


class ServiceError(AnalogEdgeError, RuntimeError):
    """The latent service did not start or did not answer in time."""


@dataclass(frozen=True)
class ExternalService:
    """A running latent service the fleet uses instead of starting one (`--latent-address`, or the
    run config's `latent-address` / `admin-token` / `latent-ca`): its address, the admin token its
    TrainClassifier and Status need, and its TLS root certificate (a PEM file on the machine that
    runs the ServerApp; empty: plaintext)."""

    address: str
    admin_token: str = ""
    ca: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ConfigError(f"latent-address: got {self.address!r}, must be host:port of a running latent service")
        for name, value in (("admin-token", self.admin_token), ("latent-ca", self.ca)):
            if not isinstance(value, str):
                raise ConfigError(f"{name}: got {value!r}, must be a string")

    def tls(self) -> TlsOptions | None:
        """TLS options for the fleet's own RPCs (None: plaintext)."""
        return TlsOptions.from_files(self.ca) if self.ca else None

    def ca_pem(self) -> str | None:
        """The root certificate's PEM text, which the task carries to the devices (None: plaintext)."""
        return Path(self.ca).read_text() if self.ca else None

    def to_run_config(self) -> dict[str, str]:
        """The Flower run config keys that name this service to the ServerApp."""
        out = {"latent-address": self.address, "admin-token": self.admin_token}
        if self.ca:
            out["latent-ca"] = self.ca
        return out

    @classmethod
    def from_run_config(cls, rc: Mapping[str, Any]) -> "ExternalService | None":
        """The service a run config names; None when it names none (the fleet starts its own)."""
        address = str(rc.get("latent-address", "") or "")
        if not address:
            return None
        return cls(address, str(rc.get("admin-token", "") or ""), str(rc.get("latent-ca", "") or ""))


class ServiceHandle:
    """A latent service this fleet run started (or was given): `.address`, `.store_dir`,
    `.admin_token`; `.stop()` ends it. Not the gRPC servicer (`server.service.LatentService`):
    this is the operator's handle on a running one."""

    def __init__(self, store_dir: Path, classifier: ClassifierConfig, mode: str = "inprocess") -> None:
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.admin_token = secrets.token_hex(16)
        self.tls: TlsOptions | None = None       # the services this handle starts listen on loopback
        self._handle: Any = None
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._pid: int | None = None
        self.address = ""
        if mode == "inprocess":
            self._start_inprocess(classifier)
        elif mode == "subprocess":
            self._start_subprocess(classifier)
        else:
            raise ConfigError(f"server: got {mode!r}, must be inprocess or subprocess")

    @classmethod
    def external(cls, service: ExternalService, store_dir: str | Path = "") -> "ServiceHandle":
        """An already running service (e.g. `analog-edge serve` on a host the devices can reach),
        over TLS when it names a root certificate: the fleet only talks to it and never stops it."""
        self = cls.__new__(cls)
        self.store_dir, self.mode, self.admin_token = Path(store_dir or "."), "external", service.admin_token
        self.tls = service.tls()
        self._handle = self._proc = self._tmp = self._pid = None
        self.address = service.address
        wait_ready(service.address, tls=self.tls)
        return self

    def _server_dict(self, classifier: ClassifierConfig) -> dict[str, Any]:
        clf = classifier.to_dict()
        return {"host": "127.0.0.1", "port": 0, "store": str(self.store_dir),
                "admin_token": self.admin_token, "log_level": "WARNING", "classifier": clf}

    def _start_inprocess(self, classifier: ClassifierConfig) -> None:
        self._handle = start_server(ServerConfig.from_dict(self._server_dict(classifier)))
        self.address = self._handle.address

    def _start_subprocess(self, classifier: ClassifierConfig) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="analog-edge-serve-")
        cfg_path = Path(self._tmp.name) / "server.toml"
        port_file = Path(self._tmp.name) / "port"
        data = self._server_dict(classifier)
        data["port_file"] = str(port_file)
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the admin token
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(data, fh)
        cmd = [sys.executable, "-m", "fleet.cli", "serve", "--config", str(cfg_path),
               "--host", "127.0.0.1", "--port", "0", "--store", str(self.store_dir),
               "--port-file", str(port_file)]
        log = (self.store_dir / "serve.log").open("ab")
        # Torch threads come from the server config (`torch_threads`, default 1: on a small shared
        # machine torch's default intra-op threads spin against the Ray actors; 23 s -> 3 s measured).
        env = {**os.environ, "GRPC_VERBOSITY": os.environ.get("GRPC_VERBOSITY", "ERROR")}
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      cwd=str(Path(__file__).resolve().parents[1]))
        self._pid = self._proc.pid
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceError(f"analog-edge serve exited with code {self._proc.returncode}; "
                                   f"see {self.store_dir / 'serve.log'}")
            if port_file.exists() and port_file.read_text().strip():
                self.address = f"127.0.0.1:{int(port_file.read_text().strip())}"
                wait_ready(self.address)
                return
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"analog-edge serve did not report a port within {READY_TIMEOUT_S:.0f} s")

    @property
    def pid(self) -> int | None:
        """The child's pid (subprocess mode; kept after stop so callers can check it is gone)."""
        return self._pid

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.stop(1.0)
            self._handle = None
        if self._proc is not None:
            if self._proc.poll() is None:
                os.kill(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(self._proc.pid, signal.SIGKILL)
                    self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "ServiceHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- RPCs the fleet needs ------------------------------------------------------------
    def train_classifier(self, classifier: ClassifierConfig, timeout: float = 3600.0) -> dict[str, Any]:
        """TrainClassifier over gRPC with the fleet's classifier config; returns the new status."""
        toml = tomli_w.dumps({"classifier": classifier.to_dict()})
        with self._client() as client:
            resp = client.train_classifier(toml, self.admin_token, timeout_s=timeout)
        return classifier_status(resp.classifier)

    def _client(self) -> LatentClient:
        return LatentClient(self.address, tls=self.tls, retry=RetryPolicy(max_attempts=3, timeout_s=30.0))

    def status(self) -> dict[str, Any]:
        with self._client() as client:
            resp = client.status(admin_token=self.admin_token)
        return {"total_rows": int(resp.total_rows),
                "clients": {c.client_id: {"rows": int(c.rows), "uploads": int(c.uploads),
                                          "anchor_rows": int(c.anchor_rows),
                                          "latent_dim": int(c.latent_dim), "dtype": pb.DType.Name(c.dtype)}
                            for c in resp.clients},
                "classifier": classifier_status(resp.classifier)}


def classifier_status(c: Any) -> dict[str, Any]:
    """A ClassifierStatus as a dict: the accuracy was measured on held_out_rows, never on trained_rows."""
    return {"version": int(c.version), "held_out_accuracy": float(c.held_out_accuracy),
            "trained_rows": int(c.trained_rows), "held_out_rows": int(c.held_out_rows),
            "trained_at": c.trained_at, "description": c.description,
            "client_conditioning": c.client_conditioning, "anchor_map": c.anchor_map or "none"}


def wait_ready(address: str, timeout: float = READY_TIMEOUT_S, tls: TlsOptions | None = None) -> None:
    """Block until the service answers Status (the port file can appear before it serves)."""
    deadline = time.monotonic() + timeout
    with LatentClient(address, tls=tls, retry=RetryPolicy(max_attempts=1, timeout_s=2.0)) as client:
        while True:
            try:
                client.status()
                return
            except UploadError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"latent service at {address}: no answer within {timeout:.0f} s "
                                       f"({exc})") from None
                time.sleep(0.2)
