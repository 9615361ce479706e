"""Flower's own runtime, driven through its supported command-line tools (Flower 1.41).

A fleet run on Flower's engines is: a `flower-superlink` (simulation mode, or deployment mode
with SuperNodes), a Flower App submitted to it with `flwr run`, and a wait for that run to finish.
`FlowerRuntime` holds one private Flower home folder (the `flwr` CLI's connection config, the
SuperLink's state), starts the processes in a `ProcessGroup` and stops all of them, by pid.

The Flower App is a one-file folder (its pyproject.toml names `fleet.flower.apps:server_app` and
`fleet.flower.apps:client_app`); the `fleet` package itself is imported from this source tree, which
goes on the processes' PYTHONPATH, so nothing is installed at run time
(`--disable-runtime-dependency-installation`).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fleet.errors import FleetError
from fleet.processes import ProcessGroup, free_port, wait_for

SOURCE_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent            # flower-superlink, flwr, ... of this environment
CONNECTION = "fleet"                         # the one SuperLink connection in our Flower home
START_TIMEOUT_S = 120.0
RUN_END_MARKER = "analog-edge: the ServerApp is done"   # its last line in the run log (fleet/flower/apps.py)
LOG_WAIT_S = 60.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")   # Flower colours its log levels even into files

APP_PYPROJECT = {
    "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
    "project": {"name": "analog-edge-fleet", "version": "1.0.0", "description": "analog-edge fleet",
                "license": "Apache-2.0", "dependencies": []},
    "tool": {"flwr": {"app": {"publisher": "analog-edge",
                              "components": {"serverapp": "fleet.flower.apps:server_app",
                                             "clientapp": "fleet.flower.apps:client_app"},
                              "config": {"config": "", "out-dir": "", "mode": "", "num-clients": 0,
                                         "latent-address": "", "admin-token": "", "latent-ca": "",
                                         "remote-devices": 0}}}},
}


@dataclass
class Tls:
    """PEM files for TLS on Flower's APIs: the CA clients trust, the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def flower_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of every Flower process: this source tree importable, no telemetry/update check."""
    env = dict(os.environ)
    path = [str(SOURCE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update({"PYTHONPATH": os.pathsep.join(path), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "GRPC_VERBOSITY": env.get("GRPC_VERBOSITY", "ERROR"), "RAY_DEDUP_LOGS": "0",
                "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    env.update(extra or {})
    return env


def run_config_arg(values: Mapping[str, Any]) -> str:
    """`flwr run --run-config` text: space-separated TOML key = value pairs."""
    parts = []
    for key, value in values.items():
        if isinstance(value, str) and ("'" in value or " " in value):
            raise FleetError(f"run config {key}: {value!r} may not contain quotes or spaces")
        parts.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    return " ".join(parts)


class FlowerRuntime:
    """One SuperLink (+ optional SuperNodes) and the `flwr` CLI configured to reach it."""

    def __init__(self, log_dir: Path, procs: ProcessGroup, env: Mapping[str, str] | None = None,
                 verbose: bool = False) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs = procs
        self.verbose = verbose
        self._home = tempfile.TemporaryDirectory(prefix="ae-flwr-")
        self.home = Path(self._home.name)
        self.env = flower_env({"FLWR_HOME": str(self.home), **(env or {})})
        self.address = ""
        self.tls: Tls | None = None

    # ---- processes -----------------------------------------------------------------------
    def _log(self, name: str) -> Path | None:
        return None if self.verbose else self.log_dir / f"{name}.log"

    def start_superlink(self, simulation: bool, tls: Tls | None = None, node_auth: bool = False,
                        host: str = "127.0.0.1", port: int = 0) -> str:
        """Start `flower-superlink` on `host:port` (default a free loopback port); returns the address
        this machine reaches it at (Fleet, Control and Runtime APIs share one port in 1.41)."""
        port = port or free_port()
        self.address, self.tls = f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}", tls
        cmd = [str(BIN / "flower-superlink"), "--host", host, "--port", str(port),
               "--database", str(self.home / "state.db"), "--disable-runtime-dependency-installation"]
        cmd += ["--ssl-ca-certfile", str(tls.ca), "--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)] \
            if tls else ["--insecure"]
        if simulation:
            cmd.append("--simulation")
        if node_auth:
            cmd.append("--enable-supernode-auth")
        log = self._log("superlink")
        proc = self.procs.start(cmd, log=log, env=self.env)
        self._write_connection()
        wait_for(lambda: _accepts(self.address), START_TIMEOUT_S, "flower-superlink", proc, log)
        self._wait_control_api(proc, log)
        return self.address

    def _write_connection(self) -> None:
        conn: dict[str, Any] = {"address": self.address}
        if self.tls:
            conn["root-certificates"] = str(self.tls.ca)
        else:
            conn["insecure"] = True
        (self.home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": CONNECTION,
                                                                             CONNECTION: conn}}))

    def _wait_control_api(self, proc: subprocess.Popen, log: Path | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.flwr(["ls", CONNECTION, "--format", "json"], check=False).returncode == 0:
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise FleetError(f"flower-superlink: Control API not answering at {self.address}"
                                 + (f"; see {log}" if log else ""))
            time.sleep(0.5)

    def register_supernode(self, public_key: Path) -> None:
        """Add a SuperNode's public key to the SuperLink's allow list (node authentication)."""
        self.flwr(["supernode", "register", str(public_key), CONNECTION, "--format", "json"])

    # ---- the flwr CLI --------------------------------------------------------------------
    def flwr(self, args: list[str], check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=str(self.home))
        if check and proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise FleetError(f"flwr {args[0]}: exit code {proc.returncode}: {' | '.join(tail)}")
        return proc

    def app_dir(self) -> Path:
        """The Flower App folder `flwr run` bundles (one pyproject.toml; code comes from PYTHONPATH)."""
        path = self.home / "app"
        path.mkdir(exist_ok=True)
        (path / "pyproject.toml").write_text(tomli_w.dumps(APP_PYPROJECT))
        return path

    def run(self, run_config: Mapping[str, Any], federation_config: Mapping[str, Any] | None = None) -> int:
        """Submit the fleet app; returns the run id."""
        args = ["run", str(self.app_dir()), CONNECTION, "--format", "json", "--run-config", run_config_arg(run_config)]
        if federation_config:
            args += ["--federation-config", run_config_arg(federation_config)]
        out = self.flwr(args).stdout
        try:
            return int(json.loads(out[out.index("{"):])["run-id"])
        except (ValueError, KeyError) as exc:
            raise FleetError(f"flwr run: no run id in its output: {out.strip()[-300:]}") from exc

    def status(self, run_id: int) -> str:
        """`pending`, `starting`, `running` or `finished:<completed|failed|stopped>`."""
        out = self.flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"]).stdout
        runs = json.loads(out[out.index("{"):]).get("runs", [])
        return str(runs[0].get("status", "")) if runs else ""

    def wait(self, run_id: int, timeout_s: float = 24 * 3600.0, poll_s: float = 2.0,
             done_hint: Callable[[], bool] | None = None, idle_status_s: float = 20.0) -> str:
        """Block until the run finishes; returns its final status.

        Every status check is a `flwr ls` process, ~1.8 CPU-seconds of start-up each (measured on the
        2-core machine): asked every 2 s it took a large share of a 2-core machine from the fleet
        it waits for. With `done_hint` (e.g. "the report file exists") the status is asked every
        `idle_status_s` until the hint turns true, then every `poll_s`; a failed run is still
        seen within `idle_status_s`. Helper processes are snapshotted every `poll_s` either way."""
        deadline = time.monotonic() + timeout_s
        asked = -float("inf")
        status = ""
        while True:
            self.procs.snapshot()                 # remember helpers while they run
            now = time.monotonic()
            if done_hint is None or done_hint() or now - asked >= idle_status_s:
                asked = now
                status = self.status(run_id)
                if status.startswith("finished"):
                    return status
            if now > deadline:
                raise FleetError(f"flwr run {run_id}: still {status!r} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def save_log(self, run_id: int, path: Path, wait_s: float = LOG_WAIT_S) -> str:
        """The run's captured output (ServerApp, and in simulation the ClientApps and Ray).

        The run's processes push their output to the SuperLink in batches, and a run can read
        "finished" before the last batch arrived: fetch again until the ServerApp's last line is
        there (or `wait_s` passed, then keep what arrived)."""
        deadline = time.monotonic() + wait_s
        while True:
            text = strip_ansi(self.flwr(["log", str(run_id), CONNECTION, "--show"], check=False).stdout)
            if RUN_END_MARKER in text or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        path.write_text(text)
        return text

    def close(self) -> None:
        """Stop every process started, then leave their log files as plain text."""
        self.procs.stop()
        self._home.cleanup()
        for log in self.log_dir.glob("*.log"):
            text = log.read_text(errors="replace")
            if ANSI_ESCAPE.search(text):
                log.write_text(strip_ansi(text))


def last_error(log: str) -> str:
    """The last exception line of a run log (what went wrong, in one line)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[-400:]
    return lines[-1][-400:] if lines else "no output"


def strip_ansi(text: str) -> str:
    """`text` without terminal colour/cursor escapes (log files are read in editors, not terminals)."""
    return ANSI_ESCAPE.sub("", text)


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False
