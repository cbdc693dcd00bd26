"""`skymesh routes compute`: offline route planning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skymesh.cli.common import (
    fail,
    load_inputs,
)


def add_parsers(sub) -> None:
    routes = sub.add_parser("routes", help="offline route planning")
    rsub = routes.add_subparsers(title="routes commands", metavar="COMMAND")
    rc = rsub.add_parser("compute", help="compute the whole route set from a latency matrix, "
                         "without a mesh", description="Compute every zone's routes, backups "
                         "included, from a catalogue, a policy and a latency matrix: what-if "
                         "planning, or a CI check of a policy change.")
    rc.add_argument("--regions", type=Path, help="region catalogue directory (default: "
                    "regions/)")
    rc.add_argument("--latency-matrix", type=Path, metavar="CSV",
                    help="RTTs, header src,dst,rtt_ms[,loss] (as for `skymesh up`; default: "
                    "latency from geography, as the local mesh emulates it)")
    rc.add_argument("--policy", type=Path, metavar="FILE",
                    help="residency policy (default: policy.yaml beside the region files, "
                    "else one zone of every region)")
    rc.add_argument("--only", help="comma-separated region ids (default: all)")
    rc.add_argument("--json", action="store_true",
                    help="print every route: {routes: [...], zones: [...], compute_ms}")
    rc.set_defaults(run=cmd_routes_compute)


def cmd_routes_compute(args: argparse.Namespace) -> int:
    from controller import offline
    from skymesh import wan
    from skymesh.catalogue import CatalogueError
    from skymesh.cli.render import table
    from skymesh.policy import PolicyError

    try:
        regions, policy = load_inputs(args.regions, args.only, args.policy)
        model = (wan.load_matrix(args.latency_matrix, regions) if args.latency_matrix
                 else wan.geo_model(regions.values()))
    except (CatalogueError, PolicyError, wan.MatrixError) as e:
        return fail(str(e))
    routes, compute_ms = offline.plan(regions, policy, model)
    rows = offline.routes_json(routes)
    zones = offline.summary(rows)
    if args.json:
        print(json.dumps({"compute_ms": round(compute_ms, 3), "regions": len(regions),
                          "zones": zones, "routes": rows}))
        return 0
    print(f"{len(regions)} regions, {len(policy.zones)} zones: routes computed in "
          f"{compute_ms:.1f} ms")
    print(table(["ZONE", "PAIRS", "REACHABLE", "INDIRECT", "NODE_BACKUP", "LINK_BACKUP",
                 "NO_BACKUP"],
                [[z["zone"], z["pairs"], z["reachable"], z["indirect"], z["node_backups"],
                  z["link_backups"], z["no_backup"]] for z in zones]))
    print("every route: --json")
    return 0
