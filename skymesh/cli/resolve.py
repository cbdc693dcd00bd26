"""`skymesh resolve [IP]`: which edges the resolver offers a client at IP (default: this
machine as the resolver sees it), best first, and why; then the race of QUIC handshakes to
the first four that the SDK runs, and the edge it would pick. The first of the resolvers to
answer wins. In the local mesh the token is minted with its app key for --zone; elsewhere
pass --token, --resolver and --edge-ca."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from skymesh.cli.common import fail, split_list

DEFAULT_TIMEOUT_S = 5.0


def add_parsers(sub) -> None:
    r = sub.add_parser("resolve", help="the edges a client should try, best first",
                       description=__doc__.split("\n\n")[0])
    r.add_argument("address", nargs="?", default="", metavar="IP",
                   help="the client's public address (default: this machine's, as the "
                   "resolver sees it)")
    r.add_argument("--zone", default="global",
                   help="the zone of the token minted in the local mesh (default: global)")
    r.add_argument("--count", type=int, default=4, help="edges wanted (default: 4, as many as "
                   "the SDK races; at most 16)")
    r.add_argument("--region", default="", help="only this region's edges (default: any)")
    r.add_argument("--no-race", dest="race", action="store_false",
                   help="rank only: no handshakes with the edges")
    r.add_argument("--edge-ca", dest="edge_ca", type=Path, metavar="PEM",
                   help="CA certificate of the edges, for the race (default: the local "
                   "mesh's)")
    r.add_argument("--edge-name", dest="edge_name", default="localhost", metavar="NAME",
                   help="the name the edges' certificates are checked for in the race: "
                   "edge.DOMAIN in a deployment (default: %(default)s, the local mesh's)")
    r.add_argument("--resolver", metavar="HOST:PORT[,HOST:PORT...]",
                   help="the resolvers to ask (default: the local mesh's)")
    r.add_argument("--token", help="the client's access token (default: one minted in the "
                   "local mesh for app --app)")
    r.add_argument("--app", default="demo", help="the local mesh's app (default: demo)")
    r.add_argument("--ca", type=Path, help="the CA bundle the resolvers' certificates are "
                   "checked with (default: the local mesh's)")
    r.add_argument("--insecure", action="store_true",
                   help="plaintext, to a resolver run with --insecure: nothing is checked")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(run=cmd_resolve)


def cmd_resolve(args: argparse.Namespace) -> int:
    import grpc

    from skymesh.cli import admin, mesh, traffic
    from skymesh.v1 import resolver_pb2, resolver_pb2_grpc

    state = mesh.running_state() or {}
    resolvers = split_list(args.resolver or state.get("resolvers", ""))
    if not resolvers:
        return fail("no resolver to ask: pass --resolver HOST:PORT (or start the local "
                    "mesh, whose controllers serve one)")
    if not 1 <= args.count <= 16:
        return fail("--count must be 1 to 16")
    try:
        token = args.token or traffic.local_token(args.app, "resolve", traffic.new_uid(
            "resolve"), args.zone, privileges=("join",))
    except admin.AdminError as e:
        return fail(str(e))
    insecure = args.insecure or state.get("insecure", False)
    ca = args.ca or (Path(state["mesh_ca"]) if state.get("mesh_ca") else None)
    if not insecure and ca is None:
        return fail("no CA to check the resolver's certificate with: pass --ca FILE")
    request = resolver_pb2.ResolveRequest(token=token, address=args.address, count=args.count,
                                          region=args.region)
    errors = []
    for address in resolvers:
        if insecure:
            channel = grpc.insecure_channel(address)
        else:
            try:
                roots = ca.read_bytes()
            except OSError as e:
                return fail(f"--ca {ca}: {e.strerror or e}")
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(roots))
        with channel:
            try:
                reply = resolver_pb2_grpc.EdgeResolverStub(channel).Resolve(
                    request, timeout=args.timeout)
                break
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                grpc.StatusCode.INVALID_ARGUMENT):
                    return fail(f"resolver {address}: {e.details()}")
                errors.append(f"{address}: {e.code().name}: {e.details()}")
    else:
        return fail("no resolver answered: " + "; ".join(errors))
    out = as_json(reply, address)
    edge_ca = args.edge_ca or (Path(state["ca"]) if state.get("ca") else None)
    if args.race and out["edges"]:
        if edge_ca is None:
            return fail("no CA of the edges to race handshakes with: pass --edge-ca FILE "
                        "(or --no-race)")
        out.update(race(out["edges"], str(edge_ca), args.edge_name))
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        sys.stdout.write(render(out))
    return 0


def as_json(reply, resolver: str) -> dict:
    def known(x: float) -> float | None:
        return None if x < 0 else x
    return {
        "resolver": resolver,
        "address": reply.address,
        "location": {"lat": reply.lat, "lon": reply.lon, "accuracy_km": reply.accuracy_km,
                     "country": reply.country, "city": reply.city} if reply.located else None,
        "zone": reply.zone,
        "edges": [{"region": e.region,
                   "address": e.nodes[0].address if e.nodes else "",
                   "distance_km": known(e.distance_km), "rtt_ms": known(e.rtt_ms),
                   "load": e.load, "reason": e.reason,
                   "nodes": [{"node_id": n.node_id, "address": n.address, "load": n.load}
                             for n in e.nodes]}
                  for e in reply.edges],
    }


def race(edges: list[dict], edge_ca: str, edge_name: str = "localhost") -> dict:
    """The SDK's race (sdk/edges.py) to the first RACE_SIZE edges offered: "race" (each edge's
    round-trip time, fastest first; an edge that did not answer has none) and "chosen" (the
    address the SDK would connect to, `sdk.edges.pick`)."""
    import asyncio

    from sdk import edges as sdk_edges

    offered = [sdk_edges.Candidate(e["region"], e["nodes"][0]["node_id"] if e["nodes"] else "",
                                   *sdk_edges.split_address(e["address"]))
               for e in edges if e["address"]][:sdk_edges.RACE_SIZE]
    raced = asyncio.run(sdk_edges.race(offered, edge_ca, server_name=edge_name))
    times = {c.address: ms for c, ms in raced}
    chosen = sdk_edges.pick([c.address for c in offered], times)
    return {"race": [{"region": c.region, "address": c.address,
                      "handshake_ms": None if c.address not in times
                      else round(times[c.address], 2)}
                     for c in sorted(offered, key=lambda c: times.get(c.address, 1e9))],
            "chosen": chosen}


def render(out: dict) -> str:
    where = out["location"]
    placed = (f"{where['city'] or where['country']} ({where['lat']:.2f}, {where['lon']:.2f}, "
              f"within {where['accuracy_km']:.0f} km)" if where else "not placed")
    lines = [f"client {out['address'] or '?'}: {placed}; zone {out['zone']}; "
             f"resolver {out['resolver']}"]
    if not out["edges"]:
        lines.append("  no usable edge in the zone")
    for i, e in enumerate(out["edges"], 1):
        dist = "-" if e["distance_km"] is None else f"{e['distance_km']:.0f} km"
        rtt = "-" if e["rtt_ms"] is None else f"~{e['rtt_ms']:.0f} ms"
        lines.append(f"  {i}. {e['region']:<10} {e['address']:<22} {dist:>9} {rtt:>8} "
                     f"load {e['load']}")
        lines.append(f"     {e['reason']}")
    if "race" in out:
        times = ", ".join(f"{r['region']} {r['handshake_ms']:.1f} ms" if r["handshake_ms"]
                          is not None else f"{r['region']} no answer" for r in out["race"])
        lines.append(f"handshakes: {times}")
        lines.append(f"chosen: {out['chosen'] or 'none answered'}")
    return "\n".join(lines) + "\n"
