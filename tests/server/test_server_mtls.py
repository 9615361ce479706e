"""Mutual TLS: with --tls-client-ca the server only talks to clients whose certificate that CA signed."""
import datetime
import ipaddress

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from server_helpers import ChildServer

from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe

_NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_NOW - datetime.timedelta(minutes=5))
            .not_valid_after(_NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca_cert, ca_key, cn: str, server: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_NOW - datetime.timedelta(minutes=5)).not_valid_after(_NOW + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path):
    ca_cert, ca_key = _ca("analog-edge test CA")
    rogue_cert, rogue_key = _ca("rogue CA")
    srv_cert, srv_key = _leaf(ca_cert, ca_key, "localhost", server=True)
    cli_cert, cli_key = _leaf(ca_cert, ca_key, "edge-1", server=False)
    rogue_cli_cert, rogue_cli_key = _leaf(rogue_cert, rogue_key, "edge-1", server=False)
    for name, data in [("ca.crt", _pem(ca_cert)), ("server.crt", srv_cert), ("server.key", srv_key)]:
        (tmp_path / name).write_bytes(data)
    srv = ChildServer(tmp_path / "store", "--tls-cert", str(tmp_path / "server.crt"),
                      "--tls-key", str(tmp_path / "server.key"), "--tls-client-ca", str(tmp_path / "ca.crt"))
    ca_pem = _pem(ca_cert)
    try:
        with ServiceProbe(srv.address, "mtls-1", tls_root=ca_pem, tls_cert=cli_cert, tls_key=cli_key,
                          timeout=20) as c:
            c.register(4, pb.FLOAT32, [0, 1])
            ack = c.upload(np.ones((7, 4), np.float32), np.ones(7, np.int32), upload_id="m1")
            assert ack.rows_stored == 7 and c.status().total_rows == 7
        # TLS without a client certificate: the handshake is refused, not even Status gets through
        with ServiceProbe(srv.address, "no-cert", tls_root=ca_pem, timeout=5) as anon:
            with pytest.raises(grpc.RpcError) as err:
                anon.status()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # a certificate signed by another CA is refused as well
        with ServiceProbe(srv.address, "rogue", tls_root=ca_pem, tls_cert=rogue_cli_cert, tls_key=rogue_cli_key,
                          timeout=5) as rogue:
            with pytest.raises(grpc.RpcError) as err:
                rogue.register(4, pb.FLOAT32, [0, 1])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # and nothing the refused clients tried reached the store
        with ServiceProbe(srv.address, "mtls-1", tls_root=ca_pem, tls_cert=cli_cert, tls_key=cli_key,
                          timeout=20) as c:
            st = c.status(srv.admin)
            assert [cl.client_id for cl in st.clients] == ["mtls-1"] and st.total_rows == 7
    finally:
        srv.kill()


def test_client_certificate_needs_both_halves():
    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        ServiceProbe("127.0.0.1:1", "x", tls_root=b"-", tls_cert=b"cert-only")
