"""TLS: a self-signed certificate made at test time; tokens only travel over the encrypted channel."""
import datetime
import ipaddress

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from server_helpers import ChildServer

from protos import latent_service_pb2 as pb
from server.probe import ServiceProbe


def _self_signed(tmp_path, cn="localhost"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / f"{cn}.crt").write_bytes(cert_pem)
    (tmp_path / f"{cn}.key").write_bytes(key_pem)
    return tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key"


def test_tls_round_trip_and_plaintext_is_refused(tmp_path):
    cert, key = _self_signed(tmp_path)
    other_cert, _ = _self_signed(tmp_path, cn="impostor")
    srv = ChildServer(tmp_path / "store", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with ServiceProbe(srv.address, "secure-1", tls_root=str(cert), timeout=20) as c:
            c.register(4, pb.FLOAT32, [0, 1])
            ack = c.upload(np.ones((10, 4), np.float32), np.zeros(10, np.int32), upload_id="t1")
            assert ack.rows_stored == 10 and c.status().total_rows == 10
        # a plaintext client cannot talk to the TLS port at all (no token can leak in clear)
        with ServiceProbe(srv.address, "plain", timeout=3) as p:
            with pytest.raises(grpc.RpcError) as err:
                p.register(4, pb.FLOAT32, [0, 1])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # a client trusting a different CA refuses the server
        with ServiceProbe(srv.address, "mitm", tls_root=str(other_cert), timeout=3) as m:
            with pytest.raises(grpc.RpcError) as err:
                m.register(4, pb.FLOAT32, [0, 1])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "TLS" in srv.log()
    finally:
        srv.kill()
