"""`skymesh routes compute`: offline route planning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skymesh.cli.common import (
    fail,
    load_inputs,
)
from skymesh.linkstate import LINK


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
                    help="print every route: {routes: [...], zones: [...], compute_ms} (and "
                    "partial_mesh: {...} with --partial-mesh)")
    pm = rc.add_argument_group(
        "partial-mesh measurement", "Simulate what routing on a partly measured mesh costs: "
        "each relay measures its K nearest regions and the next hops and backups of its "
        "routes continuously, and every other peer with a short burst once per "
        "--sample-every, a rotating 1/--slots slice of them per slot; the engine (no "
        "hysteresis) routes on the links measured. Prints how its paths, costed on the "
        "full matrix, compare with the full mesh's optimum, and the probes it saves.")
    pm.add_argument("--partial-mesh", type=int, nargs="?", const=LINK.nearest, metavar="K",
                    help="simulate partial-mesh measurement with the K nearest regions "
                    f"measured continuously (K: default {LINK.nearest}, the controller's)")
    pm.add_argument("--sample-every", type=float, default=LINK.sample_every_s,
                    metavar="SECONDS", help="every other peer is sampled once per this "
                    f"period (default: {LINK.sample_every_s:g}, the controller's)")
    pm.add_argument("--slots", type=int, default=12,
                    help="slots per period, each sampling a 1/SLOTS slice (default: 12)")
    pm.add_argument("--keep-slots", type=int, default=1, metavar="N",
                    help="a sample stays in the graph for N slots after its own unless a "
                    "route uses it (default: 1)")
    pm.add_argument("--cycles", type=int, default=3, metavar="R",
                    help="periods simulated from a cold start, fewer once a whole period "
                    "changed nothing (default: 3)")
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
    partial = None
    if args.partial_mesh is not None:
        if (args.partial_mesh < 0 or args.slots < 1 or args.keep_slots < 0 or args.cycles < 1
                or not args.sample_every > 0):
            return fail("--partial-mesh and --keep-slots must be at least 0, --slots and "
                        "--cycles at least 1, --sample-every positive")
        partial = offline.partial_mesh(regions, policy, model, nearest=args.partial_mesh,
                                       slots=args.slots, rounds=args.cycles,
                                       keep_slots=args.keep_slots,
                                       sample_every_s=args.sample_every)
    routes, compute_ms = offline.plan(regions, policy, model)
    rows = offline.routes_json(routes)
    zones = offline.summary(rows)
    if args.json:
        out = {"compute_ms": round(compute_ms, 3), "regions": len(regions), "zones": zones,
               "routes": rows}
        if partial is not None:
            out["partial_mesh"] = partial.to_dict()
        print(json.dumps(out))
        return 0
    print(f"{len(regions)} regions, {len(policy.zones)} zones: routes computed in "
          f"{compute_ms:.1f} ms")
    print(table(["ZONE", "PAIRS", "REACHABLE", "INDIRECT", "NODE_BACKUP", "LINK_BACKUP",
                 "NO_BACKUP"],
                [[z["zone"], z["pairs"], z["reachable"], z["indirect"], z["node_backups"],
                  z["link_backups"], z["no_backup"]] for z in zones]))
    if partial is not None:
        print()
        print(partial_mesh_report(partial))
    print("every route: --json")
    return 0


def partial_mesh_report(r) -> str:
    """The simulation's comparison table (r: controller.offline.PartialMeshResult)."""
    from skymesh.cli.render import table

    a = r.accuracy
    slot_s = r.sample_every_s / r.slots
    state = "converged" if r.converged else "still changing the links it keeps"
    worst = f"{a.worst_ratio:.3f}" + (f" ({a.worst_pair[1]} -> {a.worst_pair[2]})"
                                      if a.worst_pair and a.worst_ratio > 1 + 1e-9 else "")
    met = (f"after {r.aim_met_after_s:g} s" if r.aim_met_after_s is not None else "not met")
    first = r.history[0]
    lines = [
        f"partial mesh: {r.nearest} nearest measured continuously, every other peer sampled "
        f"once per {r.sample_every_s:g} s ({r.slots} slots of {slot_s:g} s, a sample kept "
        f"{r.keep_slots} slot(s)); {r.cycles} cycles from a cold start, {state}; "
        "no hysteresis; paths costed on the full matrix",
        table(["", "PARTIAL MESH", "FULL MESH"], [
            ["pairs", a.pairs, a.pairs + a.unreachable_full],
            ["within 1% of the optimum", f"{a.within_1pct:.2%}", "100%"],
            ["within 5%", f"{a.within_5pct:.2%}", "100%"],
            ["within 10%", f"{a.within_10pct:.2%}", "100%"],
            ["worst ratio", worst, "1.000"],
            ["unreachable", a.unreachable, a.unreachable_full],
            ["within 5%, worst slot of the last cycle",
             f"{r.worst_slot_within_5pct:.2%}", ""],
            ["from a cold start: first slot within 5%", f"{first.within_5pct:.2%}", ""],
            ["from a cold start: >= 95% within 5%", met, ""],
            ["links in the graph", f"{r.links_graph:.0f}", r.links_full],
            ["  of which measured continuously", f"{r.links_continuous:.0f}", r.links_full],
            ["probes per relay per second", f"{r.probes_per_relay_s:.1f}",
             f"{r.probes_per_relay_s_full:.1f}"],
        ]),
    ]
    return "\n".join(lines)
