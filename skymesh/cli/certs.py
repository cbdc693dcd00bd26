"""`skymesh certs`: the mesh's certificate authority, its trust bundle, and the certificates
of its controllers, relays and admins (and of the client edges)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skymesh import certs as certs_mod
from skymesh import identity
from skymesh.cli.common import (
    fail,
)


def add_parsers(sub) -> None:
    certs = sub.add_parser("certs", help="the mesh's certificate authority and certificates",
                           description="The mesh's certificate authority (ca.pem, ca.key), "
                           "the trust bundle every process checks peers against (bundle.pem) "
                           "and the certificates naming each controller, relay and admin "
                           "(spiffe://MESH/controller/ID, /relay/REGION/NODE, "
                           "/admin/ROLE/NAME). Processes pick up reissued certificates and a "
                           "new bundle without restarting.")
    csub = certs.add_subparsers(title="certs commands", metavar="COMMAND")
    ci = csub.add_parser("init", help="create the mesh's CA (once; reused when valid)",
                         description="Create an EC P-256 certificate authority (ca.pem, "
                         "ca.key) and the trust bundle (bundle.pem) for a mesh, or keep the "
                         "one there if it is valid.")
    ci.add_argument("--mesh", default=identity.DEFAULT_MESH,
                    help="the mesh's name, its SPIFFE trust domain (default: %(default)s)")
    ci.set_defaults(run=cmd_certs_init)
    ids = []
    c = csub.add_parser("controller", help="issue a controller's certificate",
                        description="Write controller-ID.pem and .key naming "
                        "spiffe://MESH/controller/ID, for the names the controller is "
                        "reached by.")
    c.add_argument("id", metavar="ID")
    c.add_argument("--host", action="append", required=True, metavar="H",
                   help="DNS name or IP address relays and admins reach it by (repeatable)")
    c.set_defaults(run=cmd_certs_identity, kind="controller")
    ids.append(c)
    c = csub.add_parser("relay", help="issue a relay's certificate (its region and node)",
                        description="Write relay-REGION-NODE.pem and .key naming "
                        "spiffe://MESH/relay/REGION/NODE: the controller lets it speak for "
                        "that region and node only.")
    c.add_argument("region", metavar="REGION")
    c.add_argument("node", metavar="NODE")
    c.set_defaults(run=cmd_certs_identity, kind="relay")
    ids.append(c)
    c = csub.add_parser("admin", help="issue an admin's certificate (viewer or operator)",
                        description="Write admin-NAME.pem and .key naming "
                        "spiffe://MESH/admin/ROLE/NAME: a viewer reads; an operator also "
                        "drains, undrains, runs chaos and drills.")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--role", choices=identity.ROLES, required=True)
    c.set_defaults(run=cmd_certs_identity, kind="admin")
    ids.append(c)
    for c in ids:
        c.add_argument("--days", type=int, default=certs_mod.LEAF_DAYS,
                       help="validity (default: %(default)s; reissue before it ends: "
                       "processes pick the new one up)")
    rc = csub.add_parser("rotate-ca", help="make a new CA; the bundle keeps trusting the old "
                         "one", description="Create a new CA (ca.pem, ca.key) and put it in "
                         "front of the trust bundle, keeping the old CAs there: reissue every "
                         "certificate with the new CA, then `certs prune-bundle`. Processes "
                         "pick up the new bundle at their next handshake; open sessions stay.")
    rc.set_defaults(run=cmd_certs_rotate)
    pb = csub.add_parser("prune-bundle", help="trust only the current CA from now on",
                         description="Drop every CA but the current one from the trust "
                         "bundle: certificates of the old CAs are refused from then on.")
    pb.set_defaults(run=cmd_certs_prune)
    cs = csub.add_parser("issue", help="issue a TLS certificate signed by the development CA",
                         description="Write NAME.pem and NAME.key, a server and client "
                         "certificate for the given DNS names and IP addresses, signed by the "
                         "CA in the same directory (created when absent).")
    cs.add_argument("name", metavar="NAME", help="file name stem and common name")
    cs.add_argument("--host", action="append", required=True, metavar="H",
                    help="DNS name or IP address it is for (repeatable)")
    cs.add_argument("--days", type=int, default=825, help="validity (default: %(default)s)")
    cs.set_defaults(run=cmd_certs_issue)
    for c in (ci, cs, rc, pb, *ids):
        c.add_argument("--dir", type=Path, metavar="DIR",
                       help="certificate directory (default: $SKYMESH_HOME/certs)")
    cw = csub.add_parser("show", help="a certificate's subject, issuer, validity and names")
    cw.add_argument("file", type=Path, metavar="FILE")
    cw.set_defaults(run=cmd_certs_show)
    for c in (ci, cs, cw, rc, pb, *ids):
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
        cert, key = certs.ensure_dev_ca(directory, args.mesh)
        info = certs.describe(cert)
        if certs.mesh_of(certs.load_cert(cert)) != args.mesh:
            return fail(f"{cert} is the CA of mesh {certs.mesh_of(certs.load_cert(cert))!r}, "
                        f"not {args.mesh!r}: use another --dir")
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


def cmd_certs_identity(args: argparse.Namespace) -> int:
    from skymesh import certs

    directory = certs_dir(args)
    if args.days < 1:
        return fail("--days must be at least 1")
    try:
        mesh = certs.mesh_of(certs.load_ca(directory)[0])
        if args.kind == "controller":
            who, hosts = identity.controller(mesh, args.id), args.host
        elif args.kind == "relay":
            who, hosts = identity.relay(mesh, args.region, args.node), []
        else:
            who, hosts = identity.admin(mesh, args.name, args.role), []
        cert, key = certs.issue_identity(directory, directory, who, hosts, args.days)
        info = certs.describe(cert)
    except identity.IdentityError as e:
        return fail(str(e))
    except (certs.CertError, OSError) as e:
        return fail(f"cannot issue the certificate: {e} (create the CA with `skymesh certs "
                    "init`)")
    if args.json:
        print(json.dumps({"cert": str(cert), "key": str(key),
                          "bundle": str(directory / certs.BUNDLE), **info}))
    else:
        print(f"issued {cert} (key {key}) for {who.uri}")
        print_cert(info)
    return 0


def cmd_certs_rotate(args: argparse.Namespace) -> int:
    from skymesh import certs

    directory = certs_dir(args)
    try:
        mesh = certs.mesh_of(certs.load_ca(directory)[0])
        cert, key = certs.create_ca(directory, mesh=mesh)
        trusted = [certs.describe_ca(c) for c in certs.load_bundle(directory / certs.BUNDLE)]
    except (certs.CertError, OSError) as e:
        return fail(f"cannot rotate the CA in {directory}: {e}")
    if args.json:
        print(json.dumps({"ca": str(cert), "key": str(key), "trusted": trusted}))
    else:
        print(f"new CA {cert} (key {key}); the bundle trusts {len(trusted)} CAs:")
        for t in trusted:
            print(f"  {t['subject']}  until {t['not_after']}")
        print("reissue every certificate now, then `skymesh certs prune-bundle`")
    return 0


def cmd_certs_prune(args: argparse.Namespace) -> int:
    from skymesh import certs

    directory = certs_dir(args)
    try:
        dropped = [certs.describe_ca(c) for c in certs.prune_bundle(directory)]
    except (certs.CertError, OSError) as e:
        return fail(f"cannot prune the bundle in {directory}: {e}")
    if args.json:
        print(json.dumps({"dropped": dropped}))
    else:
        print(f"dropped {len(dropped)} CAs from {directory / certs.BUNDLE}" if dropped
              else "the bundle trusts only the current CA already")
    return 0
