"""Shared helpers of the server tests: a real child server process on a free loopback port."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import latent_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "test-admin-token"   # the admin token ChildServer starts with (unless admin=None)


class ChildServer:
    """`python -m server serve --port 0` in a child process; stopped by pid."""

    def __init__(self, store: Path, *extra: str, log: Path | None = None, admin: str | None = ADMIN) -> None:
        self.store = Path(store)
        self.port_file = self.store.parent / f"{self.store.name}.port"
        self.port_file.unlink(missing_ok=True)
        self.log_path = log or self.store.parent / f"{self.store.name}.log"
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0", "--store", str(store),
             "--port-file", str(self.port_file), "--grace-seconds", "5",
             *(["--admin-token", admin] if admin else []), *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start:\n{self.log()}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.admin = admin or ""
        self.address = f"127.0.0.1:{self.port}"

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, channel: grpc.Channel, timeout: float = 20.0) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service="analog_edge.v1.LatentService"),
                          timeout=timeout, wait_for_ready=True)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING

    def terminate(self, timeout: float = 30.0) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._log.close()


def clusters(n: int, dim: int, n_classes: int, seed: int, sep: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: a learnable latent set (float32 z, int labels)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(scale=sep, size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    z = centers[y] + rng.normal(size=(n, dim))
    return z.astype(np.float32), y


F32 = pb.Quantization(dtype=pb.FLOAT32)
