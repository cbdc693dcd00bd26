"""The development CA and its leaf certificates: structure, signatures, file modes, a real
TLS handshake, and the `skymesh certs` commands."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from skymesh import certs

HOSTS = ["127.1.0.3", "localhost", "frankfurt.edge.skymesh.local"]


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def ca(tmp_path):
    return certs.create_ca(tmp_path / "ca")


@pytest.fixture
def leaf(tmp_path, ca):
    return certs.issue_cert(tmp_path / "leaf", ca[0].parent, "frankfurt", HOSTS)


def test_ca_is_self_signed_and_marked_ca(ca):
    cert_path, key_path = ca
    assert (cert_path.name, key_path.name) == ("ca.pem", "ca.key")
    cert = load(cert_path)
    assert cert.subject == cert.issuer
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                             ec.ECDSA(cert.signature_hash_algorithm))
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert mode(key_path) == 0o600
    info = certs.describe(cert_path)
    assert info["is_ca"] and info["self_signed"] and info["valid_now"]


def test_leaf_signed_by_ca_with_sans_and_ekus(ca, leaf):
    cert_path, key_path = leaf
    assert (cert_path.name, key_path.name) == ("frankfurt.pem", "frankfurt.key")
    ca_cert, cert = load(ca[0]), load(cert_path)
    assert cert.issuer == ca_cert.subject
    ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                ec.ECDSA(cert.signature_hash_algorithm))
    assert certs.verify_signed_by(cert, ca_cert)
    assert not certs.verify_signed_by(cert, cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.1.0.3")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost",
                                                     "frankfurt.edge.skymesh.local"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert mode(key_path) == 0o600
    info = certs.describe(cert_path)
    assert not info["is_ca"] and not info["self_signed"]
    assert info["sans"] == ["DNS:localhost", "DNS:frankfurt.edge.skymesh.local",
                            "IP:127.1.0.3"]
    assert info["extended_key_usage"] == ["serverAuth", "clientAuth"]
    assert info["not_before"] < info["not_after"]


def test_ensure_dev_ca_is_idempotent(tmp_path):
    first = certs.ensure_dev_ca(tmp_path)
    pem = first[0].read_bytes()
    second = certs.ensure_dev_ca(tmp_path)
    assert first == second and second[0].read_bytes() == pem


def test_errors(tmp_path, ca):
    with pytest.raises(certs.CertError, match="cannot read"):
        certs.describe(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(certs.CertError, match="not a PEM certificate"):
        certs.describe(bad)
    with pytest.raises(certs.CertError, match="at least one host"):
        certs.issue_cert(tmp_path, ca[0].parent, "x", [])
    # a CA whose key is not its certificate's
    other = certs.create_ca(tmp_path / "other")
    ca[1].write_bytes(other[1].read_bytes())
    with pytest.raises(certs.CertError, match="is not the key of"):
        certs.issue_cert(tmp_path, ca[0].parent, "x", ["localhost"])
    # ensure_dev_ca refuses a broken CA rather than using or replacing it
    with pytest.raises(certs.CertError, match="is not the key of"):
        certs.ensure_dev_ca(ca[0].parent)
    ca[1].unlink()
    with pytest.raises(certs.CertError, match="cannot read key"):
        certs.ensure_dev_ca(ca[0].parent)


def test_tls_handshake(ca, leaf):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(leaf[0], leaf[1])
    client_ctx = ssl.create_default_context(cafile=str(ca[0]))
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    errors = []

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.sendall(s.recv(5).upper())
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b, server_hostname="frankfurt.edge.skymesh.local") as c:
        c.sendall(b"hello")
        assert c.recv(5) == b"HELLO"
        assert c.getpeercert()["subject"][-1][0][1] == "frankfurt"
    t.join(5)
    assert not errors


def test_tls_rejects_wrong_name(ca, leaf):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(leaf[0], leaf[1])
    client_ctx = ssl.create_default_context(cafile=str(ca[0]))
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)

    def serve():
        try:
            server_ctx.wrap_socket(a, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(ssl.SSLCertVerificationError):
        client_ctx.wrap_socket(b, server_hostname="tokyo.edge.skymesh.local")
    b.close()
    t.join(5)
    a.close()


def skymesh(tmp_path, *args):
    env = {**os.environ, "SKYMESH_HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "skymesh", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.processes
def test_cli(tmp_path):
    r = skymesh(tmp_path, "certs", "init", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["created"] and out["is_ca"]
    assert out["ca"] == str(tmp_path / "certs" / "ca.pem")
    r = skymesh(tmp_path, "certs", "init", "--json")
    again = json.loads(r.stdout)
    assert not again["created"] and again["sha256"] == out["sha256"]

    r = skymesh(tmp_path, "certs", "issue", "frankfurt", "--host", "127.1.0.3",
                "--host", "frankfurt.edge.skymesh.local", "--json")
    assert r.returncode == 0, r.stderr
    issued = json.loads(r.stdout)
    assert issued["cert"] == str(tmp_path / "certs" / "frankfurt.pem")
    assert issued["sans"] == ["DNS:frankfurt.edge.skymesh.local", "IP:127.1.0.3"]
    assert mode(tmp_path / "certs" / "frankfurt.key") == 0o600

    r = skymesh(tmp_path, "certs", "show", issued["cert"])
    assert r.returncode == 0 and "frankfurt.edge.skymesh.local" in r.stdout

    other = tmp_path / "elsewhere"
    r = skymesh(tmp_path, "certs", "issue", "x", "--host", "localhost", "--dir", str(other))
    assert r.returncode == 0, r.stderr
    assert (other / "ca.pem").exists() and (other / "x.pem").exists()

    r = skymesh(tmp_path, "certs", "show", str(tmp_path / "nope.pem"))
    assert r.returncode == 2 and "cannot read certificate" in r.stderr
