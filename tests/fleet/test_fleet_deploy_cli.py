"""`analog-edge deploy` and `fleet --ray-address`: bad input is one line naming the flag, before
anything starts; `deploy certs` writes a PKI that TLS and Flower's node authentication accept."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_bad_flags_are_one_line_naming_the_flag(tmp_path):
    _one_line_error(_cli("deploy", "certs", "--out", str(tmp_path / "p"), "--nodes", "0"), "--nodes", "0")
    assert not (tmp_path / "p").exists()
    _one_line_error(_cli("deploy", "server", "--pki", str(tmp_path / "none"), "--clients", "2",
                         "--out", str(tmp_path / "o")), "--pki", "ca.crt", "deploy certs")
    _one_line_error(_cli("deploy", "server", "--pki", str(tmp_path), "--superlink-port", "70000"),
                    "--superlink-port", "70000")
    _one_line_error(_cli("fleet", "--ray-address", "nohost", "--out", str(tmp_path / "f")), "--ray-address", "nohost")
    _one_line_error(_cli("fleet", "--backend", "local", "--ray-address", "127.0.0.1:6379", "--out",
                         str(tmp_path / "f")), "--ray-address", "local backend")


def test_certs_make_a_tls_chain_and_node_keys_flower_reads(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    proc = _cli("deploy", "certs", "--out", str(tmp_path), "--nodes", "2", "--host", "10.1.2.3")
    assert proc.returncode == 0, proc.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.1.2.3", "127.0.0.1"}
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert oct((tmp_path / "server.key").stat().st_mode & 0o777) == "0o600"
    for i in range(2):   # P-384 pairs in OpenSSH format: what flower-supernode / flwr supernode register read
        priv = load_ssh_private_key((tmp_path / f"node-{i}.key").read_bytes(), password=None)
        pub = load_ssh_public_key((tmp_path / f"node-{i}.pub").read_bytes())
        assert isinstance(priv, ec.EllipticCurvePrivateKey) and priv.curve.name == "secp384r1"
        assert priv.public_key().public_numbers() == pub.public_numbers()
    assert (tmp_path / "node-0.pub").read_bytes() != (tmp_path / "node-1.pub").read_bytes()
