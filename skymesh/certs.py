"""The mesh's certificates: its certificate authority, the trust bundle every process checks
peers against, and the leaf certificates it issues (EC P-256, PEM files).

A mesh's CA carries the mesh's name as a URI SAN (spiffe://<mesh>); the certificates of its
controllers, relays and admins carry their SPIFFE ID (skymesh/identity.py), which is what the
controller authorises. `bundle.pem` holds every CA still trusted: rotating the CA adds the new
one in front and keeps the old one until its leaves are replaced, so nothing stops trusting a
peer mid-rotation.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skymesh import identity
from skymesh.identity import Identity

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
BUNDLE = "bundle.pem"
LEAF_DAYS = 90  # mesh identities: short-lived, reissued (and picked up) without restarts
EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
             ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


class CertError(Exception):
    """A certificate or key file is missing, unreadable, or does not match."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now_stamp() -> str:
    return _now().strftime("%Y%m%dT%H%M%S.%f")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "skymesh"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically; a private file is created with mode 0600 and never wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if private:
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def files_stamp(*paths: Path | str) -> tuple:
    """What changes when any of these files is replaced (a reissued certificate or key):
    for processes that pick up new files without restarting."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as e:
        raise CertError(f"cannot read certificate {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise CertError(f"{path} is not a PEM certificate: {e}") from None


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise CertError(f"cannot read key {path}: {e.strerror or e}") from None
    except (ValueError, TypeError) as e:
        raise CertError(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path}: expected an EC private key, got {type(key).__name__}")
    return key


def _matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in `ca_dir`; CertError unless they are a valid, current CA
    pair."""
    cert = load_cert(Path(ca_dir) / CA_CERT)
    key = load_key(Path(ca_dir) / CA_KEY)
    if not _matches(cert, key):
        raise CertError(f"{Path(ca_dir) / CA_KEY} is not the key of {Path(ca_dir) / CA_CERT}")
    if not _is_ca(cert):
        raise CertError(f"{Path(ca_dir) / CA_CERT} is not a CA certificate")
    now = _now()
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise CertError(f"{Path(ca_dir) / CA_CERT} is not valid now (valid "
                        f"{cert.not_valid_before_utc.isoformat()} to "
                        f"{cert.not_valid_after_utc.isoformat()})")
    return cert, key


def create_ca(directory: Path, name: str | None = None, days: int = 3650,
              mesh: str = identity.DEFAULT_MESH) -> tuple[Path, Path]:
    """A new self-signed CA of mesh `mesh` in `directory` (overwriting one there): (ca.pem,
    ca.key). The trust bundle gains it in front; CAs already there stay trusted."""
    directory = Path(directory)
    identity.check_mesh(mesh)
    key = ec.generate_private_key(ec.SECP256R1())
    # a CA's subject is unique, so peers never confuse an old CA with its successor
    subject = _name(name or f"skymesh {mesh} CA {now_stamp()}")
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"{identity.SCHEME}{mesh}")]), critical=False)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    trusted = [c for c in load_bundle(directory / BUNDLE) if c != cert] \
        if (directory / BUNDLE).exists() else []
    write_bundle(directory / BUNDLE, [cert, *trusted])
    return cert_path, key_path


def ensure_dev_ca(directory: Path, mesh: str = identity.DEFAULT_MESH) -> tuple[Path, Path]:
    """The CA in `directory`: created when absent or expired, else reused. A CA that is there
    but unreadable or mismatched is a CertError, not silently replaced (its leaves would
    stop verifying)."""
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        return create_ca(directory, mesh=mesh)
    cert = load_cert(cert_path)
    if _now() >= cert.not_valid_after_utc:
        return create_ca(directory, mesh=mesh)
    load_ca(directory)
    if not (directory / BUNDLE).exists():  # a CA made before bundles existed
        write_bundle(directory / BUNDLE, [cert])
    return cert_path, key_path


def mesh_of(ca_cert: x509.Certificate) -> str:
    """The mesh a CA serves (its spiffe://<mesh> URI; the default mesh for a CA without)."""
    uris = _uris(ca_cert)
    return identity.mesh_of(uris[0]) if uris else identity.DEFAULT_MESH


def load_bundle(path: Path) -> list[x509.Certificate]:
    """The CA certificates of a trust bundle (one or more PEM certificates)."""
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except OSError as e:
        raise CertError(f"cannot read trust bundle {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise CertError(f"{path} is not a bundle of PEM certificates: {e}") from None
    for c in certs:
        if not _is_ca(c):
            raise CertError(f"{path}: {c.subject.rfc4514_string()} is not a CA certificate")
    return certs


def write_bundle(path: Path, certs: list[x509.Certificate]) -> None:
    _write(Path(path), b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def prune_bundle(directory: Path) -> list[x509.Certificate]:
    """Keep only the current CA in the trust bundle; returns the CAs dropped. Run once every
    leaf of the old CAs is reissued: from then on their certificates are refused."""
    directory = Path(directory)
    current = load_cert(directory / CA_CERT)
    trusted = load_bundle(directory / BUNDLE)
    dropped = [c for c in trusted if c != current]
    write_bundle(directory / BUNDLE, [current])
    return dropped


def _san(host: str) -> x509.GeneralName:
    host = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host) or not host.isascii():
        raise CertError(f"not an IP address or DNS name: {host!r}")
    return x509.DNSName(host.lower())


def issue_cert(directory: Path, ca_dir: Path, name: str, hosts: list[str],
               days: int = 825, uri: str | None = None) -> tuple[Path, Path]:
    """A leaf certificate for `hosts` (DNS names and IP addresses) and the SPIFFE ID `uri`,
    signed by the CA in `ca_dir`, good for TLS servers and clients: (<name>.pem,
    <name>.key) in `directory`."""
    if not name or "/" in name or name.startswith(".") or name in ("ca", "bundle"):
        raise CertError(f"bad certificate name {name!r}")
    if not hosts and not uri:
        raise CertError("a certificate needs at least one host (DNS name or IP address)")
    sans = list(dict.fromkeys(_san(h) for h in hosts))
    if uri:
        sans.insert(0, x509.UniformResourceIdentifier(uri))
    ca_cert, ca_key = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(directory)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def file_stem(who: Identity) -> str:
    """Where an identity's certificate is kept: controller-<id>, relay-<region>-<node>,
    admin-<name>."""
    if who.kind == "relay":
        return f"relay-{who.region}-{who.name}"
    return f"{who.kind}-{who.name}"


def issue_identity(directory: Path, ca_dir: Path, who: Identity, hosts: list[str] = (),
                   days: int = LEAF_DAYS) -> tuple[Path, Path]:
    """A certificate of the mesh for `who` (hosts: the names a controller is reached by),
    signed by the CA in `ca_dir`, which must be the CA of `who`'s mesh."""
    ca_mesh = mesh_of(load_ca(ca_dir)[0])
    if ca_mesh != who.mesh:
        raise CertError(f"the CA in {ca_dir} is mesh {ca_mesh!r}'s, not {who.mesh!r}'s")
    return issue_cert(directory, ca_dir, file_stem(who), list(hosts), days, uri=who.uri)


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ext.get_values_for_type(x509.UniformResourceIdentifier)


def hosts_of(cert: x509.Certificate) -> list[str]:
    """The host names and addresses a certificate is valid for, names first."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return (ext.get_values_for_type(x509.DNSName)
            + [str(a) for a in ext.get_values_for_type(x509.IPAddress)])


def identity_of(cert: x509.Certificate) -> Identity:
    """The mesh identity a leaf certificate names; CertError when it names none or several."""
    uris = [u for u in _uris(cert) if u.startswith(identity.SCHEME)]
    if len(uris) != 1:
        raise CertError(f"certificate {cert.subject.rfc4514_string()} names "
                        f"{len(uris)} SPIFFE IDs; a mesh certificate names one")
    try:
        return identity.parse(uris[0])
    except identity.IdentityError as e:
        raise CertError(str(e)) from None


def verify_signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether `cert` carries a valid signature of `ca_cert`'s key."""
    if cert.issuer != ca_cert.subject:
        return False
    try:
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                    ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def is_current(cert_path: Path, key_path: Path, ca_cert: x509.Certificate,
               hosts: Iterable[str] = (), fresh_s: float = 86400) -> bool:
    """Whether the certificate at `cert_path` and its key at `key_path` can stay: the key is
    the certificate's, signed by `ca_cert` (the current CA), naming every one of `hosts`,
    valid for `fresh_s` more."""
    try:
        cert = load_cert(cert_path)
        info = describe(cert_path)
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (CertError, OSError, ValueError, TypeError):
        return False
    names = {n.split(":", 1)[1] for n in info["sans"]}
    fresh = cert.not_valid_after_utc.timestamp() - time.time() > fresh_s
    own_key = key.public_key() == cert.public_key()
    return own_key and fresh and set(hosts) <= names and verify_signed_by(cert, ca_cert)


def describe(cert_path: Path) -> dict:
    """What the CLI shows of a certificate."""
    cert = load_cert(cert_path)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = ([f"URI:{u}" for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
                + [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
                + [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        sans = []
    try:
        eku = [EKU_NAMES.get(u, u.dotted_string) for u in
               cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        eku = []
    now = _now()
    return {"file": str(cert_path), "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "valid_now": cert.not_valid_before_utc <= now < cert.not_valid_after_utc,
            "sans": sans, "identity": _describe_identity(cert),
            "extended_key_usage": eku, "is_ca": _is_ca(cert),
            "self_signed": verify_signed_by(cert, cert),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":")}


def _describe_identity(cert: x509.Certificate) -> str:
    if _is_ca(cert):
        return f"CA of mesh {mesh_of(cert)}" if _uris(cert) else ""
    try:
        return identity_of(cert).uri
    except CertError:
        return ""


def describe_ca(cert: x509.Certificate) -> dict:
    return {"subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":")}
