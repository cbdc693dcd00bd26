"""The command line's mesh credentials: the --certs/--ca/--cert/--key/--insecure options of
every process and client of the control plane, and which files they come to."""

from __future__ import annotations

import argparse
from pathlib import Path

from skymesh.cli.common import say_on_stderr
from skymesh.net.tls import INSECURE_WARNING, TlsFiles

_warned: list[bool] = []  # a client that resolves at every call warns once


class CredentialsError(Exception):
    """No usable certificate was given or found; the message says what to do."""


def add_arguments(parser: argparse.ArgumentParser, whose: str) -> None:
    """The mutual TLS options of a process or client whose certificate is `whose`'s."""
    g = parser.add_argument_group(
        "mutual TLS", f"The control plane speaks mutual TLS: {whose} presents a certificate "
        "of the mesh's CA and trusts only that CA (see `skymesh certs`).")
    g.add_argument("--certs", type=Path, metavar="DIR",
                   help="where the mesh's certificates are (default: $SKYMESH_HOME/certs)")
    g.add_argument("--ca", type=Path, metavar="PEM",
                   help="trust bundle: the mesh's CA certificates (default: DIR/bundle.pem)")
    g.add_argument("--cert", type=Path, metavar="PEM",
                   help=f"{whose} certificate (default: the one in DIR, see above)")
    g.add_argument("--key", type=Path, metavar="PEM",
                   help="its private key (default: the certificate's name with .key)")
    g.add_argument("--insecure", action="store_true",
                   help="INSECURE: plaintext gRPC, no certificates; anyone who can reach the "
                   "controller can act as any relay or operator. For a network you trust "
                   "entirely, never the Internet")


def certs_dir(args: argparse.Namespace) -> Path:
    from skymesh.cli import mesh

    return args.certs or mesh.home() / "certs"


def resolve(args: argparse.Namespace, pattern: str, issue_hint: str,
            what: str = "", quiet: bool = False) -> TlsFiles | None:
    """The files of the options in `args` (added by `add_arguments`): --cert, else the one
    certificate in the directory matching `pattern` (e.g. "relay-tokyo-*.pem"). None with
    --insecure, after a loud warning on stderr. CredentialsError says what is missing."""
    if args.insecure:
        given = [f"--{n}" for n in ("ca", "cert", "key") if getattr(args, n)]
        if given:
            raise CredentialsError(f"--insecure is plaintext: it takes no {', '.join(given)}")
        if not quiet or not _warned:
            say_on_stderr("WARNING: " + INSECURE_WARNING.format(what=what or "the controller"))
            _warned.append(True)
        return None
    directory = certs_dir(args)
    cert = args.cert
    if cert is None:
        found = sorted(directory.glob(pattern))
        if len(found) != 1:
            names = ", ".join(p.name for p in found)
            raise CredentialsError(
                f"{'several certificates' if found else 'no certificate'} matching {pattern} "
                f"in {directory}{f' ({names})' if found else ''}: pass --cert and --key, "
                f"issue one with `{issue_hint}`, or run with --insecure on a trusted "
                "network only")
        cert = found[0]
    files = TlsFiles(args.ca or directory / "bundle.pem", cert,
                     args.key or cert.with_suffix(".key"))
    for option, path in (("--ca", files.ca), ("--cert", files.cert), ("--key", files.key)):
        if not Path(path).is_file():
            raise CredentialsError(f"{option} {path}: no such file (issue the mesh's "
                                   f"certificates with `skymesh certs`)")
    return files
