"""The admin client: asks the controller, prints tables or JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import grpc

from skymesh.cli import credentials, mesh
from skymesh.cli.common import fail
from skymesh.cli.render import render
from skymesh.linkstate import FROM_WIRE
from skymesh.net.tls import TlsError, TlsFiles
from skymesh.net.tls import channel as tls_channel
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2


class AdminError(Exception):
    """A failure to show to the operator as it is."""


class NotAnswering(AdminError):
    """The controller did not answer in time, or could not be reached."""


class _Credentials:
    """The admin certificate this command calls the controller with (None: --insecure),
    resolved from its options at the first call."""

    files: TlsFiles | None = None
    set = False
    options = argparse.Namespace(insecure=False, cert=None, ca=None, key=None, certs=None)


def use_credentials(files: TlsFiles | None) -> None:
    _Credentials.files, _Credentials.set = files, True


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that calls the controller: its address and credentials."""
    credentials.add_arguments(parser, "this admin client")
    parser.set_defaults(controller_client=True)


def configure(args: argparse.Namespace) -> None:
    """Call the controller with the credentials of these options (see add_client_arguments),
    from the first call on."""
    _Credentials.options, _Credentials.set = args, False


def credentials_in_use() -> TlsFiles | None:
    """The admin certificate of the options: --cert, else the local mesh's operator (when
    it runs and no --controller is given), else the one admin-*.pem in the certificate
    directory; None (plaintext) with --insecure, or for a local mesh started --insecure.
    Raises AdminError."""
    if _Credentials.set:
        return _Credentials.files
    # resolved at every call, not kept: in one process (a test run) the local mesh may change
    args = argparse.Namespace(**vars(_Credentials.options))
    explicit = args.insecure or args.cert or args.ca or args.key
    state = mesh.running_state() if not explicit and not getattr(args, "controller", None) \
        else None
    if state is not None and state.get("insecure"):
        args.insecure = True
    elif state is not None and state.get("admin_cert"):  # the local mesh's operator
        args.cert = Path(state["admin_cert"])
    try:
        return credentials.resolve(args, "admin-*.pem", "skymesh certs admin NAME --role "
                                   "operator", quiet=True)
    except credentials.CredentialsError as e:
        raise AdminError(str(e)) from None


def controller_address(given: str | None) -> str:
    if given:
        return given
    state = mesh.running_state()
    if state is None:
        raise AdminError(f"no local mesh is running (no live state in {mesh.state_file()}); "
                         "start one with `skymesh up`, or pass --controller HOST:PORT")
    return state["controller"]


def call(address: str, method: str, request, timeout: float = 5.0):
    """One admin call; `address` may name several replicas ("A,B,C"): the first that
    answers does (any replica serves; a write is relayed to the leader)."""
    if "," in address:
        errors = []
        for one in address.split(","):
            try:
                return call(one, method, request, timeout)
            except NotAnswering as e:
                errors.append(str(e))
        raise NotAnswering("; ".join(errors))
    try:
        channel = tls_channel(address, credentials_in_use())
    except TlsError as e:
        raise AdminError(str(e)) from None
    with channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                    and not refused_by_peer(e):
                hint = ("; a controller that speaks mutual TLS closes plaintext connections"
                        if credentials_in_use() is None else "")
                raise NotAnswering(f"controller {address} is not answering "
                                   f"({e.code().name}: {e.details()}){hint}") from None
            raise AdminError(f"{e.details()} ({e.code().name})") from None


# how gRPC's own failures to reach a server begin (a controller's refusals say why in words
# of its own)
TRANSPORT_FAILURES = ("failed to connect", "Socket closed", "Connection reset", "Broken pipe",
                      "Stream removed", "DNS resolution failed", "errors resolving",
                      "Deadline Exceeded", "connections to all backends failing")


def refused_by_peer(e: grpc.RpcError) -> bool:
    """Whether the controller answered with this error (UNAVAILABLE: it cannot keep a
    change now, with the reason), rather than not being reached."""
    details = e.details() or ""
    return bool(details) and not details.startswith(TRANSPORT_FAILURES)


def status(address: str, timeout: float = 5.0) -> dict:
    return status_of(call(address, "Status", admin_pb2.StatusRequest(), timeout), address)


def status_of(r: admin_pb2.StatusReply, address: str) -> dict:
    return {"controller": address, "relays": r.relays, "regions": r.regions,
            "route_version": r.route_version, "converged": r.converged,
            "converged_for_s": round(r.converged_for_s, 1), "relays_acked": r.relays_acked,
            "links_up": r.links_up, "links_measured": r.links_measured,
            "links_expected": r.links_expected, "rejected_samples": r.rejected_samples,
            "rejected_tables": r.rejected_tables, "refused": dict(sorted(r.refused.items())),
            "uptime_s": round(r.uptime_s, 1), "partial_mesh": r.partial_mesh,
            "reports": r.reports, "samples": r.samples,
            "reports_coalesced": r.reports_coalesced,
            "report_delay_ms": {"p50": r.report_delay_p50_ms, "p99": r.report_delay_p99_ms,
                                "max": r.report_delay_max_ms},
            "recomputes": r.recomputes, "recompute_ms": r.recompute_ms,
            "replica": r.replica, "leader": r.leader,
            "replicas": [{"id": x.id, "address": x.address, "leader": x.leader,
                          "healthy": x.healthy} for x in r.replicas],
            "store": {"kind": r.store.kind, "where": r.store.where,
                      "healthy": r.store.healthy, "error": r.store.error},
            "metrics_addr": r.metrics_addr, "dashboard_url": r.dashboard_url or None}


def regions(address: str) -> list[dict]:
    """The catalogue's regions with their relays: `nodes` lists a region's connected relay
    nodes, the lead first (empty from a controller that does not list nodes), each with its
    `transit_weight` (its share of the region's transit beside its siblings', by the client
    sessions they hold); the region's own `probe_addr`, `edge_addr`, `route_version` and
    `counters` are the lead's."""
    r = call(address, "Regions", admin_pb2.RegionsRequest())
    return regions_of(r)


def regions_of(reply: admin_pb2.RegionsReply) -> list[dict]:
    return [{"id": x.id, "name": x.name, "country": x.country, "lat": x.lat, "lon": x.lon,
             "tags": list(x.tags), "connected": x.connected, "probe_addr": x.probe_addr,
             "edge_addr": x.edge_addr, "metrics_addr": x.metrics_addr,
             "health_addr": x.health_addr, "drained": x.drained,
             "route_version": x.route_version, "hello_version": x.hello_version,
             "counters": dict(sorted(x.counters.items())),
             "nodes": [{"node_id": n.node_id, "probe_addr": n.probe_addr,
                        "edge_addr": n.edge_addr, "metrics_addr": n.metrics_addr,
                        "health_addr": n.health_addr,
                        "route_version": n.route_version,
                        "lead": n.lead, "sessions": n.sessions,
                        "transit_weight": n.transit_weight or 1.0,
                        "replica": n.replica,
                        "counters": dict(sorted(n.counters.items()))} for n in x.nodes]}
            for x in reply.regions]


def links(address: str) -> list[dict]:
    return links_of(call(address, "Links", admin_pb2.LinksRequest()))


def links_of(r: admin_pb2.LinksReply) -> list[dict]:
    return [{"src": x.src, "dst": x.sample.dst, "rtt_ms": round(x.sample.rtt_ms, 3),
             "min_rtt_ms": round(x.sample.min_rtt_ms, 3),
             "jitter_ms": round(x.sample.jitter_ms, 3), "loss": round(x.sample.loss, 4),
             "window": x.sample.window, "state": FROM_WIRE[x.sample.state],
             "samples": x.sample.samples,
             "lost": x.sample.lost, "age_s": round(x.sample.age_s, 2),
             "cost_ms": round(x.cost_ms, 3), "suppressed": x.suppressed} for x in r.links]


def routes(address: str, region: str, zone: str | None = None) -> dict:
    r = call(address, "Routes", admin_pb2.RoutesRequest(region=region, zone=zone or ""))
    return {"region": r.region, "version": r.version,
            "routes": [_route(x) for x in r.routes]}


def path(address: str, src: str, dst: str, zone: str = "global") -> dict:
    return path_of(call(address, "Path", admin_pb2.PathRequest(src=src, dst=dst, zone=zone)))


def path_of(r: admin_pb2.PathReply) -> dict:
    out = {"src": r.src, "dst": r.dst, "zone": r.zone, "path": list(r.path),
           "cost_ms": round(r.cost_ms, 3), "reachable": r.reachable,
           "backup_next_hop": r.backup_next_hop or None, "backup_kind": r.backup_kind,
           "version": r.version}
    if not r.reachable:
        out["reason"] = r.reason
    return out


def zones(address: str) -> dict:
    return zones_of(call(address, "Zones", admin_pb2.ZonesRequest()))


def zones_of(r: admin_pb2.ZonesReply) -> dict:
    return {"policy": r.policy, "zones": [
        {"name": z.name, "description": z.description, "regions": list(z.regions),
         "connected": z.connected} for z in r.zones]}


def plan_failover(address: str, region: str | None, link: list[str] | None,
                  zone: str | None) -> dict:
    request = admin_pb2.FailoverRequest(region=region or "", zone=zone or "")
    if link:
        request.link_src, request.link_dst = link
    r = call(address, "PlanFailover", request, timeout=30)
    return {"failure": r.failure, "version": r.version, "routes_total": r.routes_total,
            "lost_endpoints": r.lost_endpoints, "changes": [
                {"zone": c.zone, "src": c.src, "dst": c.dst, "old_path": list(c.old_path),
                 "new_path": list(c.new_path), "old_cost_ms": round(c.old_cost_ms, 3),
                 "new_cost_ms": round(c.new_cost_ms, 3) if c.reachable else None,
                 "delta_ms": round(c.new_cost_ms - c.old_cost_ms, 3) if c.reachable else None,
                 "reachable": c.reachable, "reason": c.reason} for c in r.changes]}


def channels(address: str) -> list[dict]:
    r = call(address, "Channels", admin_pb2.ChannelsRequest())
    return [{"zone": c.zone, "channel": c.channel,
             "publisher_regions": list(c.publisher_regions),
             "subscriber_regions": list(c.subscriber_regions),
             "subscriber_nodes": list(c.subscriber_nodes)} for c in r.channels]


def events(address: str, since: float = 0.0) -> list[dict]:
    """What relays noticed and did on their own (links down or up, fast reroutes, chaos) and
    the controller's own events, oldest first; `since` in seconds since the epoch."""
    return events_of(call(address, "Events", admin_pb2.EventsRequest(since_unix_s=since)))


def events_of(r: admin_pb2.EventsReply) -> list[dict]:
    return [{"at": round(e.event.at_unix_s, 3), "region": e.region, "kind": e.event.kind,
             "peer": e.event.peer, "routes": e.event.routes, "detail": e.event.detail,
             "received": round(e.received_unix_s, 3)} for e in r.events]


def audit(address: str, since: float = 0.0, limit: int = 0) -> list[dict]:
    """The controller's audit log: every change an operator made or was refused, oldest
    first; `since` in seconds since the epoch, `limit` the most recent (0: all)."""
    r = call(address, "Audit", admin_pb2.AuditRequest(since_unix_s=since, limit=limit))
    return [{"at": round(e.at_unix_s, 3), "actor": e.actor, "action": e.action,
             "target": e.target, "detail": e.detail} for e in r.entries]


def drain(address: str, region: str, drained: bool = True) -> dict:
    r = call(address, "Drain", admin_pb2.DrainRequest(region=region, drained=drained))
    return {"region": r.region, "drained": r.drained, "version": r.version,
            "drained_regions": list(r.drained_regions)}


def rotate_fabric_key(address: str) -> dict:
    r = call(address, "RotateFabricKey", admin_pb2.RotateFabricKeyRequest())
    return {"epoch": r.epoch, "sealing_epoch": r.sealing_epoch,
            "seals_in_s": round(r.seals_in_s, 3), "retires_in_s": round(r.retires_in_s, 3),
            "epochs": list(r.epochs)}


def chaos(address: str, region: str, drop_peers: list[str] = (), drop_all: bool = False,
          until: float = 0.0, patience: float = 30.0) -> None:
    """Make `region`'s relay drop its traffic with these peers (or all), until `until`
    (seconds since the epoch) or the next call; no peers and not drop_all ends it. The call
    sets a state, so it is repeated while the controller is not answering, for up to
    `patience` seconds: a drill on a busy controller must still end its failure."""
    request = admin_pb2.ChaosRequest(region=region, chaos=relay_pb2.Chaos(
        drop_peers=list(drop_peers), drop_all=drop_all, until_unix_s=until))
    give_up = time.monotonic() + patience
    while True:
        try:
            call(address, "Chaos", request)
            return
        except NotAnswering:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.2)


def _route(x: relay_pb2.RouteEntry) -> dict:
    return {"zone": x.zone, "dst": x.dst, "next_hop": x.next_hop, "path": list(x.path),
            "cost_ms": round(x.cost_ms, 3), "backup_next_hop": x.backup_next_hop or None,
            "backup_kind": x.backup_kind}


def add_parsers(sub) -> None:
    group = sub.add_parser("admin", help="ask the controller: status, regions, links, routes, "
                           "path, zones, channels, plan-failover, events, audit; drain, "
                           "undrain, rotate-fabric-key")
    group.add_argument("--controller", metavar="HOST:PORT",
                       help="controller address (default: the local mesh's)")
    asub = group.add_subparsers(title="admin commands", metavar="COMMAND")
    for name, help_ in (("status", "relays, route version, convergence"),
                        ("regions", "the catalogue, which regions have relays and their "
                         "nodes"),
                        ("links", "measured links: RTT, jitter, loss, state")):
        a = asub.add_parser(name, help=help_)
        a.set_defaults(run=cmd_admin, what=name)
    a = asub.add_parser("routes", help="a region's route table")
    a.add_argument("region")
    a.add_argument("--zone", help="only this zone's rows (default: every zone)")
    a.set_defaults(run=cmd_admin, what="routes")
    a = asub.add_parser("path", help="the path from one region to another")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("--zone", default="global", help="residency zone (default: %(default)s)")
    a.set_defaults(run=cmd_admin, what="path")
    a = asub.add_parser("zones", help="the residency zones and their regions")
    a.set_defaults(run=cmd_admin, what="zones")
    a = asub.add_parser("channels", help="channels with sessions: where they are published "
                        "and subscribed")
    a.set_defaults(run=cmd_admin, what="channels")
    a = asub.add_parser("plan-failover", help="dry run: what a region's (or link's) failure "
                        "would do to the routes", description="Dry run on the live topology: "
                        "which routes change, what replaces them, the latency change, and "
                        "which pairs become unreachable. Nothing is touched.")
    a.add_argument("region", nargs="?", help="the region to take away")
    a.add_argument("--link", nargs=2, metavar=("SRC", "DST"),
                   help="cut this link (both directions) instead of a region")
    a.add_argument("--zone", help="only this zone (default: every zone)")
    a.set_defaults(run=cmd_admin, what="plan-failover")
    a = asub.add_parser("events", help="what relays noticed and did on their own: links down "
                        "and up, fast reroutes; and the controller's own events")
    a.add_argument("--since", type=float, default=300.0, metavar="S",
                   help="the last S seconds (default: %(default)s)")
    a.set_defaults(run=cmd_admin, what="events")
    a = asub.add_parser("audit", help="who changed what, and when: drains, undrains, chaos "
                        "and drills, and the changes refused",
                        description="The controller's audit log, kept in its state store: "
                        "every change made through the admin service with the identity of "
                        "the certificate that made it, and every change refused.")
    a.add_argument("--since", type=float, default=0.0, metavar="S",
                   help="only the last S seconds (default: everything kept)")
    a.add_argument("--limit", type=int, default=0, metavar="N",
                   help="only the most recent N entries (default: all)")
    a.set_defaults(run=cmd_admin, what="audit")
    for name, help_ in (("drain", "take a region out of service: its edge refuses new "
                         "sessions and routes move their transit off it without loss "
                         "(it keeps forwarding what is on the way)"),
                        ("undrain", "put a drained region back into service")):
        a = asub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        a.add_argument("region")
        a.set_defaults(run=cmd_admin, what=name)
    a = asub.add_parser("rotate-fabric-key", help="rotate the key of relay-to-relay "
                        "datagrams now, without loss",
                        description="Start a rotation of the fabric key now (operators "
                        "only; audited): a new key goes to every relay as accepted, seals "
                        "after the controller's overlap (--fabric-key-overlap), and the "
                        "previous one is dropped one overlap later. The controller also "
                        "rotates on its own every --fabric-key-rotation.")
    a.set_defaults(run=cmd_admin, what="rotate-fabric-key")
    for a in asub.choices.values():
        a.add_argument("--json", action="store_true", help="print JSON")
        a.add_argument("--controller", metavar="HOST:PORT", default=argparse.SUPPRESS,
                       help="controller address (default: the local mesh's)")
        add_client_arguments(a)


def cmd_admin(args: argparse.Namespace) -> int:
    try:
        address = controller_address(args.controller)
        if args.what == "status":
            data = status(address)
            if not args.controller and not data["dashboard_url"]:
                # the local mesh's: the live map `up` started
                data["dashboard_url"] = mesh.dashboard_url()
        elif args.what == "regions":
            data = regions(address)
        elif args.what == "links":
            data = links(address)
        elif args.what == "routes":
            data = routes(address, args.region, args.zone)
        elif args.what == "zones":
            data = zones(address)
        elif args.what == "channels":
            data = channels(address)
        elif args.what == "plan-failover":
            if bool(args.region) == bool(args.link):
                return fail("plan-failover: name a REGION or a --link SRC DST")
            data = plan_failover(address, args.region, args.link, args.zone)
        elif args.what == "events":
            data = events(address, time.time() - args.since)
        elif args.what == "audit":
            if args.limit < 0:
                return fail("--limit must be 0 or more")
            data = audit(address, time.time() - args.since if args.since else 0.0, args.limit)
        elif args.what in ("drain", "undrain"):
            data = drain(address, args.region, args.what == "drain")
        elif args.what == "rotate-fabric-key":
            data = rotate_fabric_key(address)
        else:
            data = path(address, args.src, args.dst, args.zone)
    except AdminError as e:
        return fail(str(e))
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(render(args.what, data))
    if args.what == "path" and not data["reachable"]:
        return 1
    return 0


