"""`skymesh controller` and `skymesh relay`: run one process of the mesh."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skymesh.cli.common import (
    fail,
    load_inputs,
    run_loop,
    setup_logging,
    until_signalled,
)
from skymesh.linkstate import LINK


def add_parsers(sub) -> None:
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
    ctl.add_argument("--resync-hold", type=float, default=15.0, metavar="S",
                     help="after a restart among relays that hold tables, push none until "
                     "every region is back and measured or this long (default: %(default)s)")
    ctl.add_argument("--hysteresis", type=float, default=0.10, metavar="FRACTION",
                     help="a route moves only when the new path is better by more than this "
                     "fraction of its cost ... (default: %(default)s)")
    ctl.add_argument("--hysteresis-ms", type=float, default=5.0, metavar="MS",
                     help="... and by more than this many ms (default: %(default)s)")
    ctl.add_argument("--apps", type=Path, metavar="FILE",
                     help="app secrets, YAML `app: secret` (default: none; clients cannot join)")
    ctl.add_argument("--fabric-keys", type=Path, metavar="FILE",
                     help="hex keys signing relay-to-relay datagrams, first one signs "
                     "(default: a random key per controller start)")
    ctl.add_argument("--state", type=Path, metavar="FILE",
                     help="where operator changes (drains) are kept across restarts "
                     "(default: not kept)")
    ctl.add_argument("--log-level", default="info")
    ctl.set_defaults(run=cmd_controller)

    relay = sub.add_parser("relay", help="run a relay node for one region")
    relay.add_argument("--region", required=True, help="region id, as in the catalogue")
    relay.add_argument("--controller", required=True, metavar="HOST:PORT")
    relay.add_argument("--bind", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="UDP address for relay traffic (default: %(default)s)")
    relay.add_argument("--wan", type=Path, metavar="FILE",
                       help="emulated WAN model (written by `skymesh up`); default: none")
    relay.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="certificate of the QUIC client edge (with --tls-key; default: "
                       "no edge)")
    relay.add_argument("--tls-key", type=Path, metavar="PEM")
    relay.add_argument("--edge-port", type=int, default=0, metavar="PORT",
                       help="UDP port of the client edge on the --bind host (default: any)")
    relay.add_argument("--log-level", default="info")
    relay.set_defaults(run=cmd_relay)


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.core import Settings
    from controller.routing import Hysteresis
    from controller.server import serve
    from skymesh.catalogue import CatalogueError
    from skymesh.policy import PolicyError

    setup_logging(args.log_level, "controller")
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
        ("down-after", args.down_after)) if not value > 0]
    if not 0 < args.degraded_loss <= 1:
        problems.append("--degraded-loss must be in (0, 1]")
    if problems:
        return fail("not starting the controller: " + "; ".join(problems))
    settings = Settings(probe_interval_s=args.probe_interval,
                        neighbour_probe_interval_s=args.neighbour_probe_interval,
                        down_after=args.down_after, degraded_loss=args.degraded_loss,
                        degraded_jitter_ms=args.degraded_jitter_ms,
                        resync_hold_s=args.resync_hold,
                        hysteresis=Hysteresis(args.hysteresis, args.hysteresis_ms))

    async def run() -> None:
        server, controller, port = await serve(regions, policy, args.listen, settings,
                                               apps, keys, args.state)
        logging.getLogger("skymesh.controller").info(
            "serving %d regions in %d zones on %s", len(regions), len(policy.zones),
            args.listen)
        await until_signalled(controller.run())
        await server.stop(grace=0.5)

    try:
        run_loop(run())
    except OSError as e:
        return fail(f"controller: {e}")
    except ValueError as e:  # the --state file
        return fail(f"not starting the controller: {e}")
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from relay.node import EdgeSettings, RelayNode
    from skymesh.wan import load_model_row

    setup_logging(args.log_level, f"relay[{args.region}]")
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        return fail(f"--bind: expected HOST:PORT, got {args.bind!r}")
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
        edge = EdgeSettings(str(args.tls_cert), str(args.tls_key), args.edge_port)
    node = RelayNode(args.region, args.controller, (host, int(port)), wan, edge=edge)

    try:
        run_loop(until_signalled(node.run()))
    except OSError as e:
        return fail(f"relay {args.region}: {e}")
    return 0
