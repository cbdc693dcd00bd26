"""Mutual TLS for the control plane's gRPC: credentials from the mesh's files, reloaded when
they change, and the identity a peer's certificate names.

Rotation without restarts: a server's credentials ask for the files at every new handshake
and take them when they changed (new leaf, new trust bundle); a client reads them each time
it connects. Sessions already open keep the handshake they made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import grpc
from cryptography import x509

from skymesh import certs
from skymesh.identity import Identity

log = logging.getLogger("skymesh.tls")

INSECURE_WARNING = ("INSECURE: plaintext gRPC without authentication (--insecure): anyone "
                    "who can reach {what} can read its traffic and act as any relay or "
                    "operator. Use only on a network you trust entirely.")


class TlsError(Exception):
    """A certificate, key or trust bundle that cannot be used, naming the file."""


@dataclass(frozen=True)
class TlsFiles:
    """The files one process speaks TLS with: the trust bundle (the mesh's CAs) and its own
    certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path, stem: str) -> TlsFiles:
        """<directory>/bundle.pem and <directory>/<stem>.pem, .key."""
        d = Path(directory)
        return cls(d / certs.BUNDLE, d / f"{stem}.pem", d / f"{stem}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(trust bundle, certificate chain, key) as PEM; TlsError naming a file that cannot
        be read or is not what it should be."""
        out = []
        for what, path in (("trust bundle", self.ca), ("certificate", self.cert),
                           ("key", self.key)):
            try:
                out.append(Path(path).read_bytes())
            except OSError as e:
                raise TlsError(f"{what} {path}: {e.strerror or e}") from None
        try:
            certs.load_bundle(self.ca)
            certs.load_cert(self.cert)
            certs.load_key(self.key)
        except certs.CertError as e:
            raise TlsError(str(e)) from None
        return out[0], out[1], out[2]

    def stamp(self) -> tuple:
        """What changes when any of the files is replaced."""
        return certs.files_stamp(self.ca, self.cert, self.key)

    def identity(self) -> Identity:
        """The identity this process's own certificate names."""
        try:
            return certs.identity_of(certs.load_cert(self.cert))
        except certs.CertError as e:
            raise TlsError(f"{self.cert}: {e}") from None


def server_credentials(files: TlsFiles, clients_need_certificates: bool = True,
                       ) -> grpc.ServerCredentials:
    """Credentials of a server that requires a client certificate of the mesh (or, for a
    service whose calls carry their own credentials, as the EdgeResolver's tokens, none),
    and picks up new files at the next handshake. TlsError if the files cannot be used
    now."""
    ca, chain, key = files.read()
    state = {"stamp": files.stamp()}

    def config(ca: bytes, chain: bytes, key: bytes):
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def fetch():
        # called by gRPC at every new handshake: a stat of three files, and a reload only
        # when one changed (a half-written rotation keeps the old credentials)
        stamp = files.stamp()
        if stamp == state["stamp"]:
            return None
        try:
            new = files.read()
        except TlsError as e:
            log.error("keeping the previous TLS credentials: %s", e)
            return None
        state["stamp"] = stamp
        log.info("TLS credentials reloaded from %s", files.cert)
        return config(*new)

    return grpc.dynamic_ssl_server_credentials(
        config(ca, chain, key), fetch, require_client_authentication=clients_need_certificates)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Credentials of a client presenting its certificate and trusting the mesh's CAs, read
    now (a client that reconnects picks up rotated files). TlsError if unusable."""
    ca, chain, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=chain)


def channel(target: str, files: TlsFiles | None, aio: bool = False):
    """A gRPC channel to `target`: mutual TLS with `files`, plaintext when None (--insecure)."""
    module = grpc.aio if aio else grpc
    if files is None:
        return module.insecure_channel(target)
    return module.secure_channel(target, channel_credentials(files))


@lru_cache(maxsize=4096)
def _identity_of_pem(pem: bytes) -> Identity | None:
    try:
        return certs.identity_of(x509.load_pem_x509_certificate(pem))
    except (ValueError, certs.CertError):
        return None


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The mesh identity the peer's verified certificate names; None on a plaintext
    connection or for a certificate that names none."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return _identity_of_pem(bytes(pems[0])) if pems else None
