"""`skymesh certs`: the mesh's certificate authority, its trust bundle, and the certificates
of its controllers, relays and admins (and of the client edges)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skymesh import certs as certs_mod
from skymesh import identity, provisioning
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
    cs = csub.add_parser("issue", help="issue a TLS certificate signed by the CA, or every "
                         "certificate a deployment of the catalogue needs",
                         description="Write NAME.pem and NAME.key, a server and client "
                         "certificate for the given DNS names and IP addresses, signed by the "
                         "CA in the same directory (created when absent). With "
                         "--for-catalogue: write into --out every certificate terraform hands "
                         "out for the regions (terraform/README.md): per region its client "
                         "edge's (edge-REGION) and one per relay node (relay-REGION-nK, K up "
                         "to the region's capacity.relays), per controller replica its own "
                         "(controller-cK) and its etcd member's (etcd-cK), the trust bundle "
                         "and manifest.json. Run again, it keeps what is current and "
                         "reissues what is missing, expiring within --renew-within, or signed "
                         "by a CA no longer current (after `certs rotate-ca`).")
    cs.add_argument("name", metavar="NAME", nargs="?",
                    help="file name stem and common name (not with --for-catalogue)")
    cs.add_argument("--host", action="append", metavar="H",
                    help="DNS name or IP address it is for (repeatable)")
    cs.add_argument("--days", type=int, help="validity (default: 825; with --for-catalogue "
                    f"{certs_mod.LEAF_DAYS})")
    fc = cs.add_argument_group("a deployment's certificates")
    fc.add_argument("--for-catalogue", type=Path, metavar="DIR",
                    help="the region catalogue (regions/) to issue a deployment's "
                    "certificates for, signed by the mesh's CA in --dir")
    fc.add_argument("--out", type=Path, metavar="DIR",
                    help="where they are written (terraform's certs_dir)")
    fc.add_argument("--only", metavar="REGION,...", help="these regions only (default: all)")
    fc.add_argument("--domain", default=provisioning.DEFAULT_DOMAIN,
                    help="the DNS domain the deployment's names are under: c1.DOMAIN, "
                    "etcd-c1.DOMAIN, edge.DOMAIN, REGION.edge.DOMAIN (default: %(default)s; "
                    "terraform's var.domain)")
    fc.add_argument("--controllers", type=int, default=provisioning.DEFAULT_CONTROLLERS,
                    metavar="N", help="controller replicas (default: %(default)s)")
    fc.add_argument("--nodes", type=int, metavar="N",
                    help="relay nodes per region (default: each region's capacity.relays)")
    fc.add_argument("--renew-within", type=int, default=30, metavar="DAYS",
                    help="reissue certificates that end within this many days (default: "
                    "%(default)s)")
    fc.add_argument("--force", action="store_true", help="reissue every certificate")
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
    if args.for_catalogue:
        return issue_for_catalogue(args, directory)
    for flag in ("out", "only", "nodes"):
        if getattr(args, flag) is not None:
            return fail(f"--{flag} goes with --for-catalogue")
    if not args.name or not args.host:
        return fail("certs issue: give NAME and --host (or --for-catalogue DIR --out DIR)")
    args.days = 825 if args.days is None else args.days
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


def issue_for_catalogue(args: argparse.Namespace, ca_dir: Path) -> int:
    """`certs issue --for-catalogue DIR --out DIR`: a deployment's certificates."""
    import shutil
    import sys

    from skymesh import certs
    from skymesh.catalogue import CatalogueError, load_catalogue, select
    from skymesh.cli.common import split_list

    if args.name or args.host:
        return fail("--for-catalogue issues every certificate of the deployment: it takes no "
                    "NAME or --host")
    if args.out is None:
        return fail("--for-catalogue needs --out DIR, where the certificates go")
    days = certs.LEAF_DAYS if args.days is None else args.days
    if days < 1 or args.renew_within < 0 or args.renew_within >= days:
        return fail("--days must be at least 1, and --renew-within from 0 to less than --days")
    try:
        regions = load_catalogue(args.for_catalogue)
        if args.only:
            regions = select(regions, split_list(args.only))
        plan = provisioning.certificate_plan(regions, args.domain, args.controllers,
                                             args.nodes)
    except (CatalogueError, provisioning.ProvisioningError) as e:
        return fail(f"cannot plan the certificates:\n{e}")
    try:
        ca_cert = certs.load_ca(ca_dir)[0]
        mesh = certs.mesh_of(ca_cert)
    except (certs.CertError, OSError) as e:
        return fail(f"no usable CA in {ca_dir}: {e} (create one with `skymesh certs init "
                    f"--dir {ca_dir}`)")
    out = args.out
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    rows = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_dir / certs.BUNDLE, out / certs.BUNDLE)
        for n, spec in enumerate(plan, 1):
            cert, key = out / f"{spec.stem}.pem", out / f"{spec.stem}.key"
            keep = not args.force and certs.is_current(
                cert, key, ca_cert, spec.hosts, args.renew_within * 86400)
            if not keep:
                if spec.kind == "relay":
                    certs.issue_identity(out, ca_dir, identity.relay(mesh, spec.region,
                                                                     spec.node), (), days)
                elif spec.kind == "controller":
                    certs.issue_identity(out, ca_dir, identity.controller(mesh, spec.node),
                                         spec.hosts, days)
                else:  # the client edge's and etcd's: TLS servers, no mesh identity
                    certs.issue_cert(out, ca_dir, spec.stem, list(spec.hosts), days)
            info = certs.describe(cert)
            rows.append({"file": cert.name, "key": key.name, "kind": spec.kind,
                         "region": spec.region, "node": spec.node, "hosts": list(spec.hosts),
                         "issued": not keep, "not_after": info["not_after"],
                         "sha256": info["sha256"]})
            if not keep and (n % 25 == 0 or n == len(plan)):
                say(f"  {n}/{len(plan)} certificates")
    except (certs.CertError, identity.IdentityError, OSError) as e:
        return fail(f"cannot issue the certificates in {out}: {e}")
    manifest = {"mesh": mesh, "domain": args.domain, "catalogue": str(args.for_catalogue),
                "bundle": certs.BUNDLE, "controllers": args.controllers,
                "regions": {rid: provisioning.node_ids(r, args.nodes)
                            for rid, r in regions.items()},
                "certificates": rows}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    issued = sum(r["issued"] for r in rows)
    if args.json:
        print(json.dumps({"out": str(out), "issued": issued, "kept": len(rows) - issued,
                          "manifest": str(out / "manifest.json"), **manifest}))
    else:
        print(f"{out}: {issued} certificates issued, {len(rows) - issued} kept (current), for "
              f"{len(regions)} regions and {args.controllers} controllers of mesh {mesh!r}; "
              f"manifest {out / 'manifest.json'}")
    return 0
