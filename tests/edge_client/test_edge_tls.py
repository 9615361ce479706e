"""The service client (protos/client.py) over TLS (server auth) and mutual TLS against the real server, with certificates made
here (a throwaway CA signs the server's and the client's)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from edge_client.codec import quantize_latents  # noqa: E402
from protos.client import LatentClient, RetryPolicy, TlsOptions, UploadError  # noqa: E402


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, san: list | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-test-ca")])
    ca = _cert("edge-test-ca", ca_key, ca_name, ca_key, ca=True)
    import ipaddress

    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("localhost", srv_key, ca_name, ca_key, ca=False,
                san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("edge-1", cli_key, ca_name, ca_key, ca=False)
    files = {"ca": ca, "srv": srv, "cli": cli}
    out = {}
    for name, cert in files.items():
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for name, key in (("srv_key", srv_key), ("cli_key", cli_key)):
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(_pem_key(key))
    return out


def _start(tmp_path, pki, mutual: bool):
    from server.app import start_server
    from server.config import ServerConfig

    cfg = ServerConfig(port=0, store=str(tmp_path / "store"), tls_cert=str(pki["srv"]), tls_key=str(pki["srv_key"]),
                       tls_client_ca=str(pki["ca"]) if mutual else None, log_level="WARNING")
    return start_server(cfg)


def _upload(addr: str, tls: TlsOptions | None, attempts: int = 1):
    q = quantize_latents(np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32), 8)
    with LatentClient(addr, tls=tls, retry=RetryPolicy(max_attempts=attempts, timeout_s=5.0)) as c:
        token = c.register("edge-1", 4, q.dtype, list(range(3)))
        return c.upload("edge-1", token, q, np.arange(20) % 3)


def test_tls_upload_and_plaintext_refused(tmp_path, pki):
    handle = _start(tmp_path, pki, mutual=False)
    try:
        addr = f"127.0.0.1:{handle.port}"
        res = _upload(addr, TlsOptions.from_files(str(pki["ca"]), server_name="localhost"))
        assert res.rows_stored == 20
        with pytest.raises(UploadError) as info:
            _upload(addr, None)                      # plaintext to a TLS port never gets through
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        handle.stop(1)


def test_mutual_tls_needs_the_client_certificate(tmp_path, pki):
    handle = _start(tmp_path, pki, mutual=True)
    try:
        addr = f"127.0.0.1:{handle.port}"
        with pytest.raises(UploadError):
            _upload(addr, TlsOptions.from_files(str(pki["ca"]), server_name="localhost"))
        res = _upload(addr, TlsOptions.from_files(str(pki["ca"]), str(pki["cli"]), str(pki["cli_key"]),
                                                  server_name="localhost"))
        assert res.rows_stored == 20
    finally:
        handle.stop(1)


def test_tls_options_reject_non_pem(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="tls_ca: .*ca.pem is not a PEM file"):
        TlsOptions.from_files(str(bad))
    with pytest.raises(ValueError, match="tls_ca: cannot read"):
        TlsOptions.from_files(str(tmp_path / "missing.pem"))
