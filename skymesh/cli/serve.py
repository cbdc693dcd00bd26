"""`skymesh controller` and `skymesh relay`: run one process of the mesh."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from skymesh.cli import configs, credentials
from skymesh.cli.common import (
    add_log_format,
    fail,
    load_inputs,
    parse_ttl,
    run_loop,
    setup_logging,
    until_signalled,
)
from skymesh.linkstate import LINK


def add_parsers(sub) -> None:
    from controller.election import DEFAULT_TTL_S, MAX_TTL_S
    from relay.history import DEFAULT_MAX_AGE_S, DEFAULT_MESSAGES
    ctl = sub.add_parser("controller", help="run a controller")
    ctl.add_argument("--listen", default="127.0.0.1:7400", help="HOST:PORT (default: %(default)s)")
    ctl.add_argument("--regions", type=Path, help="region catalogue directory (default: regions/)")
    ctl.add_argument("--only", help="comma-separated region ids to serve (default: all)")
    ctl.add_argument("--policy", type=Path, metavar="FILE",
                     help="residency policy (default: policy.yaml beside the region files, "
                     "else one zone of every region)")
    ctl.add_argument("--probe-interval", type=float, default=LINK.probe_interval_s, metavar="S",
                     help="seconds between the probes that measure every link (default: "
                     "%(default)s)")
    ctl.add_argument("--neighbour-probe-interval", type=float,
                    default=LINK.neighbour_probe_interval_s, metavar="S",
                     help="seconds between probes of the links each relay's traffic went "
                     "over in the last 30 s, and their routes' backups: with --down-after, "
                     "how soon a dead link is found (default: %(default)s)")
    ctl.add_argument("--down-after", type=int, default=LINK.down_after, metavar="N",
                     help="missed probes in a row that make a link down, and send traffic to "
                     "the routes' backups (default: %(default)s)")
    ctl.add_argument("--degraded-loss", type=float, default=LINK.degraded_loss, metavar="FRACTION",
                     help="probe loss above which a link is degraded (default: %(default)s)")
    ctl.add_argument("--degraded-jitter-ms", type=float,
                     default=LINK.degraded_jitter_ms, metavar="MS",
                     help="jitter above which a link is degraded (default: %(default)s)")
    ctl.add_argument("--partial-mesh-above", type=int, default=LINK.partial_mesh_above,
                     metavar="N",
                     help="with more relays than this, each measures its --nearest regions, "
                     "the next hops and backups of its routes, and the others by a rotating "
                     "sample (default: %(default)s)")
    ctl.add_argument("--nearest", type=int, default=LINK.nearest, metavar="K",
                     help="regions (by great-circle distance) each relay of a partial mesh "
                     "measures at all times (default: %(default)s)")
    ctl.add_argument("--sample-every", type=float, default=LINK.sample_every_s, metavar="S",
                     help="in a partial mesh, every other link is measured at least this "
                     "often (default: %(default)s)")
    ctl.add_argument("--full-report-interval", type=float,
                     default=LINK.full_report_interval_s, metavar="S",
                     help="relays report links by change, and every link they measure this "
                     "often (default: %(default)s)")
    ctl.add_argument("--resync-hold", type=float, default=15.0, metavar="S",
                     help="after a restart among relays that hold tables, push none until "
                     "every region is back and measured or this long (default: %(default)s)")
    ctl.add_argument("--hysteresis", type=float, default=0.10, metavar="FRACTION",
                     help="a route moves only when the new path is better by more than this "
                     "fraction of its cost ... (default: %(default)s)")
    ctl.add_argument("--hysteresis-ms", type=float, default=5.0, metavar="MS",
                     help="... and by more than this many ms (default: %(default)s)")
    ctl.add_argument("--apps", type=Path, metavar="FILE",
                     help="apps' token public keys, YAML `app: KEY` or `app: [KEY, ...]` "
                     "(`skymesh token keygen`; default: none, clients cannot join)")
    ctl.add_argument("--fabric-keys", type=Path, metavar="FILE",
                     help="hex keys encrypting relay-to-relay datagrams, one a line: the "
                     "first seals, the others are still accepted; epochs 1, 2, ... in that "
                     "order (default: a random key per controller start)")
    ctl.add_argument("--fabric-key-rotation", type=_duration, default=24 * 3600,
                     metavar="DURATION",
                     help="start a rotation of the fabric key this often, e.g. 24h, 30m, "
                     "0 for never (`skymesh admin rotate-fabric-key` starts one at once; "
                     "default: 24h)")
    ctl.add_argument("--fabric-key-overlap", type=float, default=5.0, metavar="S",
                     help="a rotation's overlap: the new key is accepted this long before it "
                     "seals, and the previous one accepted this long after; long beside the "
                     "time a push takes to reach every relay (default: %(default)s)")
    kept = ctl.add_mutually_exclusive_group()
    kept.add_argument("--state", type=Path, metavar="FILE",
                      help="where operator changes (drains) are kept across restarts "
                      "(default: not kept)")
    kept.add_argument("--store", metavar="etcd://HOST:PORT[,HOST:PORT...]",
                      help="keep the state on etcd, with this controller's certificate, and "
                      "serve once this replica leads (the keys: README, Controller state on "
                      "etcd)")
    ctl.add_argument("--advertise", metavar="HOST:PORT",
                     help="where the other replicas reach this one (with --store; default: "
                     "the --listen address, which 0.0.0.0 is not)")
    ctl.add_argument("--resolve-listen", metavar="HOST:PORT",
                     help="serve the EdgeResolver to clients here: TLS with this "
                     "controller's certificate, no client certificate, each call "
                     "authenticated by the client's access token (default: not served)")
    ctl.add_argument("--geoip-db", type=Path, metavar="FILE",
                     help="a MaxMind-format City database (GeoLite2-City or GeoIP2-City) "
                     "placing clients' addresses for the resolver; reloaded when the file "
                     "changes (default: none, edges by load)")
    ctl.add_argument("--metrics-listen", metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics (default: "
                     "not served; `skymesh admin status` says where they are)")
    ctl.add_argument("--dashboard-listen", metavar="HOST:PORT",
                     help="serve the live map (as `skymesh dashboard` does) at "
                     "https://HOST:PORT/ to browsers presenting an admin certificate of the "
                     "mesh, a viewer's or an operator's (plain HTTP only with --insecure; "
                     "default: not served; `skymesh admin status` gives its URL)")
    ctl.add_argument("--replica", default="c1", metavar="ID",
                     help="this replica's id in the election on etcd (default: %(default)s)")
    ctl.add_argument("--election-ttl", type=float, default=DEFAULT_TTL_S, metavar="S",
                     help="lease of the leader's election key: a dead leader is replaced "
                     f"within it (default: %(default)s; at most {MAX_TTL_S})")
    ctl.add_argument("--log-level", default="info", type=str.lower,
                       choices=configs.LOG_LEVELS)
    add_log_format(ctl)
    credentials.add_arguments(ctl, "the controller")
    configs.add_argument(ctl, "controller")
    ctl.set_defaults(run=cmd_controller, config_parser=ctl,
                     config_schema=configs.CONTROLLER_CONFIG)

    relay = sub.add_parser("relay", help="run a relay node for one region")
    relay.add_argument("--region", help="region id, as in the catalogue (required, here or "
                       "in --config)")
    relay.add_argument("--controller", metavar="HOST:PORT[,HOST:PORT...]",
                       help="the controller, or its replicas: when a session ends or cannot "
                       "begin, the next is tried (required, here or in --config)")
    relay.add_argument("--bind", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="UDP address for relay traffic (default: %(default)s)")
    relay.add_argument("--advertise", metavar="HOST",
                       help="the address other relays and clients reach this one at, for "
                       "probes, fabric and client edge alike: its public address behind NAT "
                       "(default: the --bind host, which 0.0.0.0 is not)")
    relay.add_argument("--wan", type=Path, metavar="FILE",
                       help="emulated WAN model (written by `skymesh up`); default: none")
    relay.add_argument("--edge-cert", "--tls-cert", dest="tls_cert", type=Path, metavar="PEM",
                       help="certificate of the QUIC client edge (with --edge-key; default: "
                       "no edge)")
    relay.add_argument("--edge-key", "--tls-key", dest="tls_key", type=Path, metavar="PEM")
    relay.add_argument("--edge-limits", metavar="NAME=VALUE,...", default="",
                       help="the client edge's flood limits, e.g. "
                       "joins-per-source-per-s=20,sessions-per-source=64 (names: the fields of "
                       "relay.edgesession.EdgeLimits; see the README's Security section)")
    relay.add_argument("--node", metavar="ID",
                       help="node id (default: the one its certificate names; with "
                       "--insecure, a random one)")
    relay.add_argument("--metrics-listen", metavar="HOST:PORT",
                       help="serve Prometheus metrics at http://HOST:PORT/metrics (default: "
                       "not served; the relay tells the controller where, `skymesh admin "
                       "regions`)")
    relay.add_argument("--health-listen", metavar="HOST:PORT",
                       help="serve the gRPC health service (grpc.health.v1, SERVING once "
                       "connected to a controller and holding routes) and reflection here, "
                       "in plaintext (default: not served)")
    relay.add_argument("--edge-port", type=int, default=0, metavar="PORT",
                       help="UDP port of the client edge on the --bind host (default: any)")
    relay.add_argument("--history-messages", type=int, default=DEFAULT_MESSAGES, metavar="N",
                       help="chat history: the last N messages of each channel the edge "
                       "delivers are kept, for clients joining here (default: %(default)s; "
                       "0: none)")
    relay.add_argument("--history-age", type=_duration, default=int(DEFAULT_MAX_AGE_S),
                       metavar="AGE",
                       help="... for at most AGE (90s, 15m, 24h, 7d; default: 1h)")
    relay.add_argument("--history-db", type=Path, metavar="FILE",
                       help="keep the chat history in this SQLite file too, so a restart "
                       "keeps it (default: in memory only)")
    relay.add_argument("--log-level", default="info", type=str.lower,
                       choices=configs.LOG_LEVELS)
    add_log_format(relay)
    credentials.add_arguments(relay, "the relay")
    configs.add_argument(relay, "relay")
    relay.set_defaults(run=cmd_relay, config_parser=relay, config_schema=configs.RELAY_CONFIG)


UNSPECIFIED_HOSTS = ("0.0.0.0", "::", "")


def say_checked(args: argparse.Namespace, summary: str) -> int:
    """--check-config's answer: what would run, and from which file."""
    source = f"{args.config}: valid" if args.config else "the flags are valid"
    print(f"{source}: {summary}")
    return 0


def _duration(text: str) -> int:
    """Seconds from `90s`, `15m`, `24h`, `7d` or plain seconds (argparse's type)."""
    try:
        return parse_ttl(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected e.g. 90s, 15m, 24h, 7d or seconds, got {text!r}") from None


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.core import Settings
    from controller.election import MAX_TTL_S
    from controller.routing import Hysteresis
    from controller.server import serve, shut_down
    from skymesh.catalogue import CatalogueError
    from skymesh.policy import PolicyError

    setup_logging(args.log_level, "controller", args.log_format, replica=args.replica)
    try:
        tls = credentials.resolve(args, "controller-*.pem",
                                  "skymesh certs controller ID --host HOST", args.listen)
    except credentials.CredentialsError as e:
        return fail(f"not starting the controller: {e}")
    try:
        regions, policy = load_inputs(args.regions, args.only, args.policy)
    except (CatalogueError, PolicyError) as e:
        return fail(f"not starting the controller:\n{e}")
    from skymesh.apps import AppsError, load_apps, load_fabric_keys

    try:
        apps = load_apps(args.apps) if args.apps else {}
        keys = load_fabric_keys(args.fabric_keys) if args.fabric_keys else None
    except AppsError as e:
        return fail(f"not starting the controller:\n{e}")
    problems = [f"--{name} must be positive" for name, value in (
        ("probe-interval", args.probe_interval),
        ("neighbour-probe-interval", args.neighbour_probe_interval),
        ("down-after", args.down_after), ("partial-mesh-above", args.partial_mesh_above),
        ("nearest", args.nearest), ("sample-every", args.sample_every),
        ("full-report-interval", args.full_report_interval)) if not value > 0]
    if not 0 < args.degraded_loss <= 1:
        problems.append("--degraded-loss must be in (0, 1]")
    if args.store and args.state:
        problems.append("--state and --store exclude each other (one may come from "
                        "--config)")
    if args.store and args.listen.rpartition(":")[0].strip("[]") in UNSPECIFIED_HOSTS \
            and not args.advertise:
        problems.append(f"--listen {args.listen}: other replicas cannot reach that address; "
                        "say where they can with --advertise HOST:PORT")
    if args.advertise and not re.fullmatch(r"[0-9A-Za-z.\-\[\]:]+:\d{1,5}", args.advertise):
        problems.append(f"--advertise {args.advertise!r}: expected HOST:PORT")
    if not 0 < args.election_ttl <= MAX_TTL_S:
        problems.append(f"--election-ttl must be in (0, {MAX_TTL_S}]")
    if not args.fabric_key_overlap > 0:
        problems.append("--fabric-key-overlap must be positive")
    elif args.fabric_key_rotation and args.fabric_key_rotation < 2 * args.fabric_key_overlap:
        problems.append("--fabric-key-rotation must be 0 (never) or at least two overlaps")
    if args.geoip_db and not args.resolve_listen:
        problems.append("--geoip-db is for the resolver: give --resolve-listen too")
    if problems:
        return fail("not starting the controller: " + "; ".join(problems))
    geoip = None
    if args.geoip_db:
        from skymesh.geoip import CityDatabase, GeoIPError

        try:
            geoip = CityDatabase(args.geoip_db)
        except GeoIPError as e:
            return fail(f"not starting the controller: --geoip-db {e}")
    settings = Settings(probe_interval_s=args.probe_interval,
                        neighbour_probe_interval_s=args.neighbour_probe_interval,
                        down_after=args.down_after, degraded_loss=args.degraded_loss,
                        degraded_jitter_ms=args.degraded_jitter_ms,
                        resync_hold_s=args.resync_hold,
                        partial_mesh_above=args.partial_mesh_above, nearest=args.nearest,
                        sample_every_s=args.sample_every,
                        full_report_interval_s=args.full_report_interval,
                        hysteresis=Hysteresis(args.hysteresis, args.hysteresis_ms),
                        fabric_key_rotation_s=float(args.fabric_key_rotation),
                        fabric_key_overlap_s=args.fabric_key_overlap)

    if args.check_config:
        return say_checked(args, f"controller on {args.listen}, {len(regions)} regions in "
                           f"{len(policy.zones)} zones, "
                           + (f"replica {args.replica} on {args.store}" if args.store else
                              f"state in {args.state}" if args.state else "state not kept")
                           + (f", resolver on {args.resolve_listen}" if args.resolve_listen
                              else ""))

    dashboards: list = []

    async def dashboard(port: int) -> str:
        from controller.callers import on_behalf_of
        from skymesh import identity
        from skymesh.cli.dashboard import serve_in_controller

        # the page's questions are asked as a viewer: it can show the mesh, change nothing
        acting = () if tls is None else on_behalf_of(identity.admin(
            tls.identity().mesh, f"dashboard-{args.replica}", "viewer"))
        dash = await serve_in_controller(args.dashboard_listen, args.listen, port, tls,
                                         acting, args.advertise)
        dashboards.append(dash)
        return dash.url

    async def run() -> None:
        server, controller, port = await serve(
            regions, policy, args.listen, settings, apps, keys, args.state, tls=tls,
            store_url=args.store, replica=args.replica, election_ttl_s=args.election_ttl,
            advertise=args.advertise, resolve_listen=args.resolve_listen, geoip=geoip,
            metrics_listen=args.metrics_listen,
            dashboard=dashboard if args.dashboard_listen else None)
        logging.getLogger("skymesh.controller").info(
            "serving %d regions in %d zones on %s", len(regions), len(policy.zones),
            args.listen)
        settle_controller_heap()
        try:
            await until_signalled(controller.run())
        finally:
            for dash in dashboards:
                await dash.close()
            await shut_down(server, controller)  # NOT_SERVING, then stopped

    try:
        run_loop(run())
    except OSError as e:
        return fail(f"controller: {e}")
    except ValueError as e:  # the --state file, --store, the certificates
        return fail(f"not starting the controller: {e}")
    return 0


# The cyclic garbage collector's thresholds for the controller: a route computation makes
# a hundred thousand rows that live until the next, and with the default (700) every few
# thousand allocations a pass ran, some through the whole heap: 0.1-0.25 s pauses in the
# event loop while a new leader took 300 relays over (py-spy, bench/replicas.py).
CONTROLLER_GC_THRESHOLDS = (50_000, 20, 100)


def settle_controller_heap() -> None:
    """Once serving: what exists now (modules, the catalogue, protobuf descriptors) out of
    the collector's passes, and passes far apart."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*CONTROLLER_GC_THRESHOLDS)


def cmd_relay(args: argparse.Namespace) -> int:
    from relay.edgesession import parse_limits
    from relay.node import EdgeSettings, RelayNode
    from skymesh.wan import load_model_row

    missing = [f"--{flag} (or `{field}:` in --config)" for flag, field, value in (
        ("region", "region", args.region), ("controller", "controllers", args.controller))
        if not value]
    if missing:
        return fail(f"relay: {' and '.join(missing)} required")
    fields = setup_logging(args.log_level, f"relay[{args.region}]", args.log_format,
                           region=args.region, node=args.node or "")
    try:
        tls = credentials.resolve(args, f"relay-{args.region}-*.pem",
                                  f"skymesh certs relay {args.region} NODE", args.controller)
        node_id = relay_node_id(tls, args.region, args.node)
    except credentials.CredentialsError as e:
        return fail(f"relay {args.region}: {e}")
    fields["node"] = node_id
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        return fail(f"--bind: expected HOST:PORT, got {args.bind!r}")
    host = host.strip("[]")
    if args.advertise is not None and args.advertise.strip("[]") in UNSPECIFIED_HOSTS:
        return fail(f"--advertise {args.advertise}: no one can reach that address; give the "
                    "relay's public address")
    if args.advertise is None and host in UNSPECIFIED_HOSTS:
        return fail(f"--bind {args.bind}: other relays and clients cannot reach that "
                    "address; say where they can with --advertise HOST (`advertise:` in "
                    "--config)")
    wan = None
    if args.wan:
        try:
            wan = load_model_row(args.wan, args.region)
        except (OSError, ValueError, KeyError, TypeError) as e:
            return fail(f"--wan {args.wan}: {e}")
    edge = None
    if bool(args.tls_cert) != bool(args.tls_key):
        return fail("--tls-cert and --tls-key go together")
    if args.tls_cert:
        for path in (args.tls_cert, args.tls_key):
            if not path.is_file():
                return fail(f"{path}: no such file")
        try:
            limits = parse_limits(args.edge_limits)
        except ValueError as e:
            return fail(f"--edge-limits: {e}")
        if not 0 <= args.history_messages <= 100_000:
            return fail("--history-messages: 0 to 100000")
        if args.history_db and not args.history_messages:
            return fail("--history-db keeps the chat history: --history-messages is 0")
        if args.history_age <= 0:
            return fail("--history-age must be positive")
        edge = EdgeSettings(str(args.tls_cert), str(args.tls_key), args.edge_port, limits,
                            args.history_messages, float(args.history_age),
                            str(args.history_db) if args.history_db else None)
    if args.check_config:
        return say_checked(args, f"relay {args.region}/{node_id or '(random node id)'}, "
                           f"controllers {args.controller}, udp {args.bind}"
                           + (f" advertised as {args.advertise}" if args.advertise else "")
                           + (f", client edge on port {args.edge_port}" if edge else "")
                           + (f", health on {args.health_listen}" if args.health_listen
                              else ""))
    node = RelayNode(args.region, args.controller, (host, int(port)), wan, edge=edge, tls=tls,
                     node_id=node_id, advertise=args.advertise,
                     metrics_listen=args.metrics_listen, health_listen=args.health_listen)
    fields["node"] = node.node_id  # drawn at random when no certificate names it

    try:
        run_loop(until_signalled(node.run()))
    except OSError as e:
        return fail(f"relay {args.region}: {e}")
    return 0


def relay_node_id(tls, region: str, given: str | None) -> str:
    """The node id a relay says in its hello: the one its certificate names (which --node, if
    given, must match); with --insecure, --node or empty (a random one)."""
    from skymesh.net.tls import TlsError

    if tls is None:
        return given or ""
    try:
        who = tls.identity()
    except TlsError as e:
        raise credentials.CredentialsError(str(e)) from None
    if who.kind != "relay" or who.region != region:
        raise credentials.CredentialsError(
            f"{tls.cert} is the certificate of {who}, not of a relay of {region}")
    if given and given != who.name:
        raise credentials.CredentialsError(
            f"--node {given}: {tls.cert} is the certificate of node {who.name}")
    return who.name
