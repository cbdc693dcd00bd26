"""`skymesh certs`: the development certificate authority and TLS certificates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skymesh.cli.common import (
    fail,
)


def add_parsers(sub) -> None:
    certs = sub.add_parser("certs", help="the development certificate authority and TLS "
                           "certificates")
    csub = certs.add_subparsers(title="certs commands", metavar="COMMAND")
    ci = csub.add_parser("init", help="create the development CA (once; reused when valid)",
                         description="Create an EC P-256 certificate authority (ca.pem, "
                         "ca.key) for the local mesh, or keep the one there if it is valid.")
    ci.set_defaults(run=cmd_certs_init)
    cs = csub.add_parser("issue", help="issue a TLS certificate signed by the development CA",
                         description="Write NAME.pem and NAME.key, a server and client "
                         "certificate for the given DNS names and IP addresses, signed by the "
                         "CA in the same directory (created when absent).")
    cs.add_argument("name", metavar="NAME", help="file name stem and common name")
    cs.add_argument("--host", action="append", required=True, metavar="H",
                    help="DNS name or IP address it is for (repeatable)")
    cs.add_argument("--days", type=int, default=825, help="validity (default: %(default)s)")
    cs.set_defaults(run=cmd_certs_issue)
    for c in (ci, cs):
        c.add_argument("--dir", type=Path, metavar="DIR",
                       help="certificate directory (default: $SKYMESH_HOME/certs)")
    cw = csub.add_parser("show", help="a certificate's subject, issuer, validity and names")
    cw.add_argument("file", type=Path, metavar="FILE")
    cw.set_defaults(run=cmd_certs_show)
    for c in (ci, cs, cw):
        c.add_argument("--json", action="store_true", help="print JSON")


def certs_dir(args: argparse.Namespace) -> Path:
    from skymesh.cli import mesh

    return args.dir or mesh.home() / "certs"


def print_cert(info: dict) -> None:
    for k, v in info.items():
        print(f"{k:20} {', '.join(v) if isinstance(v, list) else v}")


def cmd_certs_init(args: argparse.Namespace) -> int:
    from skymesh import certs

    directory = certs_dir(args)
    try:
        before = certs.describe(directory / certs.CA_CERT)["sha256"]
    except certs.CertError:
        before = None
    try:
        cert, key = certs.ensure_dev_ca(directory)
        info = certs.describe(cert)
    except (certs.CertError, OSError) as e:
        return fail(f"cannot create the CA in {directory}: {e}")
    created = info["sha256"] != before
    if args.json:
        print(json.dumps({"ca": str(cert), "key": str(key), "created": created, **info}))
    else:
        print(f"{'created' if created else 'using'} CA {cert} (key {key})")
        print_cert(info)
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from skymesh import certs

    directory = certs_dir(args)
    if args.days < 1:
        return fail("--days must be at least 1")
    try:
        certs.ensure_dev_ca(directory)
        cert, key = certs.issue_cert(directory, directory, args.name, args.host, args.days)
        info = certs.describe(cert)
    except (certs.CertError, OSError) as e:
        return fail(f"cannot issue {args.name}: {e}")
    if args.json:
        print(json.dumps({"cert": str(cert), "key": str(key),
                          "ca": str(directory / certs.CA_CERT), **info}))
    else:
        print(f"issued {cert} (key {key}), signed by {directory / certs.CA_CERT}")
        print_cert(info)
    return 0


def cmd_certs_show(args: argparse.Namespace) -> int:
    from skymesh import certs

    try:
        info = certs.describe(args.file)
    except certs.CertError as e:
        return fail(str(e))
    if args.json:
        print(json.dumps(info))
    else:
        print_cert(info)
    return 0
