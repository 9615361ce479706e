"""A fleet on Flower's deployment engine: a real SuperLink, real SuperNodes, TLS and node auth.

`make_pki` writes the certificates and keys a deployment needs (`analog-edge deploy certs`): a
CA, a server certificate for the SuperLink and the latent service (names/addresses in its SAN),
and one ECDSA P-384 key pair per SuperNode (OpenSSH format, what Flower's node authentication
reads). `serve_fleet` is the server machine (`analog-edge deploy server`): the latent service
(TLS), `flower-superlink` (TLS, SuperNode authentication on, the nodes' public keys registered),
then `flwr run` of the fleet app once the SuperNodes connect, and the same report as a simulated
fleet. `supernode_command` is what each device runs; `deploy local` starts N of them on loopback.
Every process is started in a `ProcessGroup` and stopped by pid, on success, failure or Ctrl-C.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.flower.runtime import BIN, SOURCE_ROOT, FlowerRuntime, Tls, flower_env, last_error, run_config_arg
from fleet.flower.simulation import write_fleet_toml
from fleet.processes import ProcessGroup, free_port, wait_for

SERVICE_READY_S = 120.0


@dataclass
class Pki:
    """The files of one deployment's PKI folder."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def key(self) -> Path:
        return self.root / "server.key"

    def node_key(self, i: int) -> Path:
        return self.root / f"node-{i}.key"

    def node_pub(self, i: int) -> Path:
        return self.root / f"node-{i}.pub"

    def tls(self) -> Tls:
        return Tls(self.ca, self.cert, self.key)

    def check(self, nodes: int) -> None:
        """Every file a deployment of `nodes` SuperNodes needs exists (one line naming the first missing)."""
        for path in [self.ca, self.cert, self.key] + [p for i in range(nodes)
                                                      for p in (self.node_key(i), self.node_pub(i))]:
            if not path.is_file():
                raise FleetError(f"--pki: {path} is missing; make it with "
                                 f"`analog-edge deploy certs --out {self.root} --nodes {nodes}`")


def make_pki(out: Path, nodes: int, hosts: Sequence[str] = ("127.0.0.1", "localhost"),
             days: int = 30) -> Pki:
    """CA, server certificate valid for `hosts`, and `nodes` SuperNode key pairs under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def private(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (x509.CertificateBuilder().subject_name(name("analog-edge CA")).issuer_name(name("analog-edge CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (x509.CertificateBuilder().subject_name(name(hosts[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(out)
    pem = serialization.Encoding.PEM
    pki.ca.write_bytes(ca.public_bytes(pem))
    pki.cert.write_bytes(cert.public_bytes(pem))
    private(pki.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for i in range(nodes):
        node = ec.generate_private_key(ec.SECP384R1())
        private(pki.node_key(i), node.private_bytes(pem, serialization.PrivateFormat.OpenSSH,
                                                    serialization.NoEncryption()))
        pki.node_pub(i).write_bytes(node.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                   serialization.PublicFormat.OpenSSH))
    return pki


def supernode_command(superlink: str, ca: Path, key: Path, partition_id: int, num_partitions: int,
                      state_dir: Path, port: int = 9094) -> list[str]:
    """The command one device runs: a SuperNode holding one partition, its own state folder."""
    node_config = run_config_arg({"partition-id": partition_id, "num-partitions": num_partitions,
                                  "state-dir": str(state_dir)})
    return [str(BIN / "flower-supernode"), "--superlink", superlink, "--root-certificates", str(ca),
            "--auth-supernode-private-key", str(key), "--node-config", node_config, "--port", str(port)]


class LatentServiceProcess:
    """`analog-edge serve` with TLS on, as a child in the group (the store outlives the run)."""

    def __init__(self, procs: ProcessGroup, fleet: FleetConfig, store: Path, pki: Pki, host: str,
                 log: Path | None, port: int = 0) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.admin_token = secrets.token_hex(16)
        port_file = store / "port"
        port_file.unlink(missing_ok=True)
        cfg = {"server": {"host": host, "port": port, "store": str(store), "port_file": str(port_file),
                          "admin_token": self.admin_token, "tls_cert": str(pki.cert), "tls_key": str(pki.key),
                          "log_level": "WARNING"},
               "classifier": fleet.classifier_config.to_dict()}
        cfg_path = store / "server.toml"
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)     # holds the admin token
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(cfg, fh)
        proc = procs.start([sys.executable, "-m", "fleet.cli", "serve", "--config", str(cfg_path)],
                           log=log, env=flower_env(), cwd=SOURCE_ROOT)
        wait_for(lambda: port_file.is_file() and port_file.read_text().strip() != "", SERVICE_READY_S,
                 "analog-edge serve", proc, log)
        self.port = int(port_file.read_text())
        self.ca = str(pki.ca)


def serve_fleet(fleet: FleetConfig, out: Path, pki: Pki, procs: ProcessGroup, host: str = "127.0.0.1",
                verbose: bool = False, on_ready: Any = None, timeout_s: float = 24 * 3600.0,
                superlink_port: int = 0, latent_port: int = 0) -> dict[str, Any]:
    """The server machine: latent service + SuperLink (TLS, node auth), then the fleet via `flwr run`.
    `on_ready(runtime)` runs once both listen (`deploy local` starts its SuperNodes there)."""
    n = fleet.num_clients
    pki.check(n)
    out.mkdir(parents=True, exist_ok=True)
    flower_dir = out / "flower"
    flower_dir.mkdir(exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    log = None if verbose else flower_dir / "latent-service.log"
    service = LatentServiceProcess(procs, fleet, out / "latent-service", pki, host, log, latent_port)
    latent_address = f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{service.port}"
    runtime = FlowerRuntime(flower_dir, procs, verbose=verbose)
    try:
        superlink = runtime.start_superlink(simulation=False, tls=pki.tls(), node_auth=True, host=host,
                                            port=superlink_port)
        for i in range(n):
            runtime.register_supernode(pki.node_pub(i))
        if on_ready is not None:
            on_ready(runtime)
        # The devices reach the latent service with TLS: the train message carries the CA's PEM text
        # (fleet.phases.device_task); a device reads no file of this machine's.
        run_config = {"config": str(write_fleet_toml(fleet, flower_dir / "fleet.toml")), "out-dir": str(out),
                      "latent-address": latent_address, "admin-token": service.admin_token,
                      "latent-ca": service.ca, "remote-devices": 1}
        t0 = time.perf_counter()
        run_id = runtime.run(run_config)
        status = runtime.wait(run_id, timeout_s=timeout_s)
        wall = time.perf_counter() - t0
        text = runtime.save_log(run_id, flower_dir / "run.log")
    finally:
        runtime.close()          # stops the whole group: SuperLink, SuperNodes, latent service
    if verbose:
        print(text, file=sys.stderr)
    report_path = out / "report.json"
    if status != "finished:completed" or not report_path.is_file():
        raise FleetError(f"flwr run {run_id} {status}: {last_error(text)} (full log: {flower_dir / 'run.log'})")
    report = json.loads(report_path.read_text())
    report["engine"] = {"kind": "deployment", "superlink": superlink, "supernodes": n, "tls": True,
                        "node_auth": True, "latent_address": latent_address, "run_id": run_id,
                        "flwr_run_wall_s": wall}
    report_path.write_text(json.dumps(report, indent=2))
    return report


def deploy_local(fleet: FleetConfig, out: Path, verbose: bool = False,
                 timeout_s: float = 24 * 3600.0) -> tuple[dict[str, Any], ProcessGroup]:
    """Server and N devices on loopback: certificates made now, N `flower-supernode` processes.
    Returns the report and the (stopped) process group, so callers can check nothing is left."""
    out = Path(out).resolve()
    n = fleet.num_clients
    pki = make_pki(out / "pki", n)
    procs = ProcessGroup()
    flower_dir = out / "flower"

    def start_nodes(runtime: FlowerRuntime) -> None:
        for i in range(n):     # each device in a folder of its own (its state, its working directory)
            node_dir = out / "nodes" / f"node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            cmd = supernode_command(runtime.address, pki.ca, pki.node_key(i), i, n, node_dir, port=free_port())
            procs.start(cmd, log=None if verbose else flower_dir / f"supernode-{i}.log", env=runtime.env,
                        cwd=node_dir)

    try:
        report = serve_fleet(fleet, out, pki, procs, verbose=verbose, on_ready=start_nodes, timeout_s=timeout_s)
    finally:
        procs.stop()
    return report, procs
