"""`skymesh`: the one command. Each subcommand imports what it needs only."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not hasattr(args, "run"):
        parser().print_help()
        return 2
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `skymesh admin links | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skymesh", description="skymesh: a global edge relay "
                                "network and its routing control plane")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    up = sub.add_parser("up", help="start the local mesh: a controller and one relay per region",
                        description="Start a controller and one relay per region on loopback "
                        "addresses, with the wide-area network emulated in the relays' send "
                        "path, and wait until routes have converged.")
    up.add_argument("--regions", type=Path, help="region catalogue directory (default: regions/)")
    up.add_argument("--only", help="comma-separated region ids to start (default: all)")
    up.add_argument("--latency-matrix", type=Path, metavar="CSV",
                    help="measured RTTs, header src,dst,rtt_ms[,loss]; a missing pair has no "
                    "direct link (default: latency from geography)")
    up.add_argument("--policy", type=Path, metavar="FILE",
                    help="residency policy (default: policy.yaml beside the region files, "
                    "else one zone of every region)")
    up.add_argument("--seed", type=int, default=0, help="seed of the geography model")
    up.add_argument("--probe-interval", type=float, metavar="S",
                    help="seconds between the probes that measure every link (default: 1 "
                    "for up to 12 relays; more relays sharing one small machine get 2)")
    up.add_argument("--neighbour-probe-interval", type=float, default=0.1, metavar="S",
                    help="seconds between probes of the links traffic uses (next hops and "
                    "their backups): with --down-after, how soon a dead link is found "
                    "(default: %(default)s)")
    up.add_argument("--down-after", type=int, default=3, metavar="N",
                    help="missed probes in a row that make a link down (default: %(default)s)")
    up.add_argument("--detach", action="store_true",
                    help="return once converged and leave the mesh running (`skymesh down`)")
    up.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for convergence (default: 120)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    up.add_argument("--demo", action="store_true",
                    help="once converged, stream from one region to several others and show "
                    "the end-to-end latency (as `skymesh demo`)")
    up.add_argument("--log-level", default="info")
    up.set_defaults(run=cmd_up)

    down = sub.add_parser("down", help="stop the local mesh started by `skymesh up`")
    down.add_argument("--json", action="store_true")
    down.set_defaults(run=cmd_down)

    ctl = sub.add_parser("controller", help="run a controller")
    ctl.add_argument("--listen", default="127.0.0.1:7400", help="HOST:PORT (default: %(default)s)")
    ctl.add_argument("--regions", type=Path, help="region catalogue directory (default: regions/)")
    ctl.add_argument("--only", help="comma-separated region ids to serve (default: all)")
    ctl.add_argument("--policy", type=Path, metavar="FILE",
                     help="residency policy (default: policy.yaml beside the region files, "
                     "else one zone of every region)")
    ctl.add_argument("--probe-interval", type=float, default=1.0, metavar="S",
                     help="seconds between the probes that measure every link (default: "
                     "%(default)s)")
    ctl.add_argument("--neighbour-probe-interval", type=float, default=0.1, metavar="S",
                     help="seconds between probes of the links each relay's traffic went "
                     "over in the last 30 s, and their routes' backups: with --down-after, "
                     "how soon a dead link is found (default: %(default)s)")
    ctl.add_argument("--down-after", type=int, default=3, metavar="N",
                     help="missed probes in a row that make a link down, and send traffic to "
                     "the routes' backups (default: %(default)s)")
    ctl.add_argument("--degraded-loss", type=float, default=0.02, metavar="FRACTION",
                     help="probe loss above which a link is degraded (default: %(default)s)")
    ctl.add_argument("--degraded-jitter-ms", type=float, default=30.0, metavar="MS",
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

    admin = sub.add_parser("admin", help="ask the controller: status, regions, links, routes, "
                           "path, zones, channels, plan-failover, events; drain, undrain")
    admin.add_argument("--controller", metavar="HOST:PORT",
                       help="controller address (default: the local mesh's)")
    asub = admin.add_subparsers(title="admin commands", metavar="COMMAND")
    for name, help_ in (("status", "relays, route version, convergence"),
                        ("regions", "the catalogue and which regions have a relay"),
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
    for name, help_ in (("drain", "take a region out of service: its edge refuses new "
                         "sessions and routes move their transit off it without loss "
                         "(it keeps forwarding what is on the way)"),
                        ("undrain", "put a drained region back into service")):
        a = asub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        a.add_argument("region")
        a.set_defaults(run=cmd_admin, what=name)
    for a in asub.choices.values():
        a.add_argument("--json", action="store_true", help="print JSON")
        a.add_argument("--controller", metavar="HOST:PORT", default=argparse.SUPPRESS,
                       help="controller address (default: the local mesh's)")

    drill = sub.add_parser("drill", help="chaos drills: take a region, a link or the "
                           "controller away under synthetic traffic, and measure",
                           description="Run synthetic channel traffic (media and messages) "
                           "over the routes a failure touches, inflict the failure, hold it, "
                           "recover, and report detection and reroute times, media gaps and "
                           "loss, message loss (must be 0), residency violations (must be 0) "
                           "and latency before, during and after. Against the local mesh "
                           "unless --controller is given.")
    dsub = drill.add_subparsers(title="drills", metavar="DRILL")
    d = dsub.add_parser("remove-region", help="take a region away (kill or blackhole its relay)")
    d.add_argument("region")
    d.add_argument("--mode", choices=("auto", "kill", "blackhole"), default="auto",
                   help="kill the relay process (local mesh) or make it drop every datagram; "
                   "auto: kill on the local mesh, else blackhole (default: %(default)s)")
    d.set_defaults(run=cmd_drill, kind="remove-region")
    d = dsub.add_parser("partition", help="cut the link between two regions")
    d.add_argument("a")
    d.add_argument("b")
    d.set_defaults(run=cmd_drill, kind="partition")
    d = dsub.add_parser("kill-controller", help="kill the controller, hold, start it again "
                        "(relays must forward on without a gap)")
    d.set_defaults(run=cmd_drill, kind="kill-controller")
    for d in dsub.choices.values():
        d.add_argument("--duration", default="30s",
                       help="how long the failure holds: 90s, 2m or seconds (default: "
                       "%(default)s)")
        d.add_argument("--dry-run", action="store_true",
                       help="show the flows and the plan-based impact; touch nothing")
        d.add_argument("--force", action="store_true",
                       help="run even when the failure leaves some zone's pair with no path")
        d.add_argument("--report", type=Path, metavar="DIR",
                       help="write the JSON, a readable summary and a PNG timeline here")
        d.add_argument("--json", action="store_true", help="print the result as JSON")
        d.add_argument("--flows", type=int, default=12, metavar="N",
                       help="at most this many flows, spread over zones and sources "
                       "(default: %(default)s)")
        d.add_argument("--rate", type=float, default=50.0, metavar="FPS",
                       help="media frames per second per flow (default: %(default)s)")
        d.add_argument("--before", type=float, default=5.0, metavar="S",
                       help="seconds of baseline before the failure (default: %(default)s)")
        d.add_argument("--after", type=float, default=10.0, metavar="S",
                       help="seconds watched after the recovery (default: %(default)s)")
        d.add_argument("--controller", metavar="HOST:PORT",
                       help="controller address (default: the local mesh's)")

    tok = sub.add_parser("token", help="issue and check access tokens")
    tsub = tok.add_subparsers(title="token commands", metavar="COMMAND")
    ti = tsub.add_parser("issue", help="print a signed access token",
                         description="Sign a grant of privileges on one channel in one "
                         "residency zone for one user of an app, with the app's secret. The "
                         "token alone goes to stdout, so `$(skymesh token issue ...)` works.")
    ti.add_argument("--app", required=True, help="app id")
    ti.add_argument("--channel", required=True)
    ti.add_argument("--uid", required=True, help="user id")
    ti.add_argument("--zone", required=True, help="residency zone")
    ti.add_argument("--privileges", default="join", metavar="P,...",
                    help="comma-separated, of join, publish-media, publish-messages "
                    "(default: %(default)s)")
    ti.add_argument("--ttl", default="1h",
                    help="validity: 90s, 15m, 1h, 7d or seconds; at most 30d "
                    "(default: %(default)s)")
    ti.set_defaults(run=cmd_token_issue)
    tv = tsub.add_parser("verify", help="check a token and print its grant",
                         description="Check a token's signature, times and (when given) "
                         "channel, zone and privileges; print its grant, or the refusal's "
                         "code and reason and exit 1.")
    tv.add_argument("token")
    tv.add_argument("--channel", help="the channel it must be for")
    tv.add_argument("--zone", help="the zone it must be for")
    tv.add_argument("--need", metavar="P,...", help="privileges it must grant")
    tv.add_argument("--app-secrets", type=Path, metavar="FILE",
                    help='JSON object {"APP": "SECRET", ...} (instead of one secret)')
    tv.set_defaults(run=cmd_token_verify)
    for t in (ti, tv):
        src = t.add_mutually_exclusive_group()
        src.add_argument("--secret-env", default="SKYMESH_APP_SECRET", metavar="VAR",
                         help="environment variable holding the app secret "
                         "(default: %(default)s)")
        src.add_argument("--secret-file", type=Path, metavar="FILE",
                         help="file holding the app secret (a trailing newline is ignored)")
        t.add_argument("--json", action="store_true", help="print JSON")

    from skymesh import cli_streams

    cli_streams.add_parsers(sub)

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
    return p


def fail(message: str, code: int = 2) -> int:
    print(f"skymesh: {message}", file=sys.stderr)
    return code


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {name} %(levelname)s %(message)s")


def load_inputs(directory: Path | None, only: str | None, policy_file: Path | None):
    """The catalogue (or its --only part) and the residency policy restricted to it: the
    policy given, else `policy.yaml` beside the region files, else one zone of everything.
    Raises CatalogueError or PolicyError."""
    from skymesh import mesh
    from skymesh.catalogue import POLICY_FILE, load_catalogue, select
    from skymesh.policy import allow_all, load_policy

    directory = directory or mesh.default_regions_dir()
    catalogue = load_catalogue(directory)
    if policy_file is None and (Path(directory) / POLICY_FILE).is_file():
        policy_file = Path(directory) / POLICY_FILE
    policy = load_policy(policy_file, catalogue) if policy_file else allow_all(catalogue)
    regions = catalogue
    if only:
        regions = select(catalogue, [x.strip() for x in only.split(",") if x.strip()])
    return regions, policy.restrict(regions)


# -- up / down ---------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    from skymesh import mesh, wan
    from skymesh.catalogue import CatalogueError
    from skymesh.policy import PolicyError

    try:
        regions, _ = load_inputs(args.regions, args.only, args.policy)
        if args.latency_matrix:
            model = wan.load_matrix(args.latency_matrix, regions)
        else:
            model = wan.geo_model(regions.values(), seed=args.seed)
    except (CatalogueError, PolicyError, wan.MatrixError) as e:
        return fail(f"not starting the mesh:\n{e}")
    if len(regions) < 2:
        return fail("a mesh needs at least two regions")
    running = mesh.running_state()
    if running:
        return fail(f"a local mesh is already running (controller {running['controller']}, "
                    f"state {mesh.state_file()}); stop it with `skymesh down`")
    mesh.home().mkdir(parents=True, exist_ok=True)
    wan_file = mesh.home() / "wan.json"
    wan.dump_model(model, wan_file)
    source = args.latency_matrix or "geography"
    say = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    say(f"starting a controller and {len(regions)} relays (latency from {source}; "
        f"logs in {mesh.home() / 'logs'})")
    t0 = time.monotonic()
    only = list(regions) if args.only else None
    try:
        measure = args.probe_interval or mesh.probe_interval(len(regions))
        m = mesh.start(regions, args.regions or mesh.default_regions_dir(), only, wan_file,
                       args.log_level, ["--probe-interval", str(measure),
                                        "--neighbour-probe-interval",
                                        str(args.neighbour_probe_interval),
                                        "--down-after", str(args.down_after)]
                       + (["--policy", str(args.policy.resolve())] if args.policy else []))
    except (RuntimeError, OSError) as e:
        return fail(str(e))
    try:
        status = wait_converged(m.controller, len(regions), args.timeout, say, m)
    except KeyboardInterrupt:
        mesh.stop(m.state, progress=say)
        return 130
    elapsed = time.monotonic() - t0
    if status is None:
        mesh.stop(m.state, progress=say)
        return fail(f"routes did not converge in {args.timeout:.0f} s; see the logs in "
                    f"{mesh.home() / 'logs'}")
    result = {**status, "converge_s": round(elapsed, 1), "state": str(mesh.state_file())}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"converged in {elapsed:.1f} s: {status['relays']} relays, "
              f"{status['links_up']} links up, route version {status['route_version']}")
        print(f"controller at {m.controller}; try `skymesh admin status`, "
              "`skymesh admin path SRC DST`")
    if args.demo:
        demo_stream(m.controller, say)
    if args.detach:
        return 0
    say("running; press Ctrl-C to stop")
    return hold(m)


def demo_stream(controller: str, say) -> None:
    """The demo stream after `up --demo`; a failure is reported, the mesh keeps running."""
    from sdk.errors import SkymeshError
    from skymesh import admin, cli_streams

    args = cli_streams.parser_defaults("demo")
    try:
        say(cli_streams.render_demo(cli_streams.run_demo(controller, args, say)))
    except (TimeoutError, admin.AdminError, SkymeshError, OSError) as e:
        say(f"the demo stream failed: {type(e).__name__}: {e}")


def wait_converged(controller: str, relays: int, timeout: float, say, m) -> dict | None:
    from skymesh import admin

    deadline = time.monotonic() + timeout
    tty = sys.stdout.isatty() and say is print
    last = ""
    while time.monotonic() < deadline:
        dead = [n for n, p in m.processes.items() if p.poll() is not None]
        if "controller" in dead:
            raise RuntimeError("the controller exited; see its log")
        try:
            s = admin.status(controller)
        except admin.AdminError:
            time.sleep(0.2)
            continue
        line = (f"relays {s['relays']}/{relays} connected, links measured "
                f"{s['links_measured']}/{relays * (relays - 1)}, routes v{s['route_version']} "
                f"acked by {s['relays_acked']}/{s['relays']}")
        if dead:
            line += f", exited: {', '.join(dead)}"
        if tty:
            print("\r" + line.ljust(len(last)), end="", flush=True)
        elif line != last:
            say(line)
        last = line
        if s["converged"] and s["relays"] == relays:
            if tty:
                print()
            return s
        time.sleep(0.25)
    if tty:
        print()
    return None


def hold(m) -> int:
    from skymesh import mesh

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping:
            if m.processes["controller"].poll() is not None:
                print("the controller exited; stopping the mesh", file=sys.stderr)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    n = mesh.stop(m.state)
    print(f"stopped {n} processes")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from skymesh import mesh

    state = mesh.read_state()
    if state is None:
        if args.json:
            print(json.dumps({"stopped": 0}))
        else:
            print(f"no local mesh to stop ({mesh.state_file()} not found)")
        return 0
    n = mesh.stop(state, progress=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"stopped": n}) if args.json else f"stopped {n} processes")
    return 0


# -- processes ---------------------------------------------------------------------------------

def run_loop(coro):
    """Run `coro` to its end on uvloop where there is one; returns its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


EXIT_DEADLINE_S = 3.0


async def until_signalled(work) -> None:
    """Run `work` until SIGTERM or SIGINT (then cancel it) or until it ends (raising what it
    raised). Once signalled the process exits within EXIT_DEADLINE_S even if tearing down
    hangs, as grpc.aio's shutdown sometimes does (grpc/grpc#40989)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        stop.set()
        watchdog = threading.Timer(EXIT_DEADLINE_S, _exit_late)
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stopper.cancel()
    if task in done:
        task.result()


def _exit_late() -> None:
    logging.getLogger("skymesh").warning(
        "shutdown did not finish in %.0f s; exiting anyway", EXIT_DEADLINE_S)
    logging.shutdown()
    os._exit(0)


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.routing import Hysteresis
    from controller.service import Settings, serve
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


def cmd_routes_compute(args: argparse.Namespace) -> int:
    from controller import offline
    from skymesh import wan
    from skymesh.admin import table
    from skymesh.catalogue import CatalogueError
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


# -- token -------------------------------------------------------------------------------------

TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def cmd_drill(args: argparse.Namespace) -> int:
    from skymesh import drill
    from skymesh.admin import AdminError

    try:
        duration = parse_ttl(args.duration)
    except ValueError:
        return fail(f"--duration: expected e.g. 30s, 2m or seconds, got {args.duration!r}")
    problems = [f"--{n} must be positive" for n, v in (
        ("flows", args.flows), ("rate", args.rate), ("duration", duration)) if not v > 0]
    if problems:
        return fail("; ".join(problems))
    targets = {"remove-region": lambda: (args.region,), "partition": lambda: (args.a, args.b),
               "kill-controller": tuple}[args.kind]()
    if args.kind == "partition" and args.a == args.b:
        return fail("partition: name two different regions")
    options = drill.DrillOptions(
        kind=args.kind, targets=targets, duration_s=duration,
        mode=getattr(args, "mode", "auto"), before_s=args.before, after_s=args.after,
        rate=args.rate, max_flows=args.flows, force=args.force, dry_run=args.dry_run,
        controller=args.controller)
    say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    try:
        result = run_loop(drill.run(options, say))
    except (drill.DrillError, AdminError) as e:
        return fail(f"drill {args.kind}: {e}")
    if args.report and not result.get("dry_run"):
        paths = drill.write_report(result, args.report)
        say(f"report: {paths['summary']}, {paths['json']}, {paths['timeline']}")
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(public, indent=1))
    else:
        print(drill.render(public))
    bad = not public.get("dry_run") and (public["messages_lost"] or public["residency_violations"])
    return 1 if bad else 0


def parse_ttl(text: str) -> int:
    """Seconds from `90s`, `15m`, `1h`, `7d` or plain seconds; ValueError otherwise."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"--ttl: expected e.g. 90s, 15m, 1h, 7d or seconds, got {text!r}")
    return int(m.group(1)) * TTL_UNITS[m.group(2)]


def split_list(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def app_secret(args: argparse.Namespace) -> bytes:
    """The one app secret named by --secret-file or --secret-env; ValueError if missing."""
    if args.secret_file:
        try:
            secret = args.secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as e:
            raise ValueError(f"--secret-file: {e}") from None
        if not secret:
            raise ValueError(f"--secret-file {args.secret_file}: the file is empty")
        return secret
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise ValueError(f"no app secret: set the environment variable {args.secret_env} "
                         "(or use --secret-env VAR / --secret-file FILE)")
    return secret.encode()


def grant_json(grant) -> dict:
    from skymesh.token import privilege_list

    return {"app": grant.app, "channel": grant.channel, "uid": grant.uid, "zone": grant.zone,
            "privileges": privilege_list(grant.privileges), "issued_at": grant.issued_at,
            "expires_at": grant.expires_at}


def cmd_token_issue(args: argparse.Namespace) -> int:
    from skymesh import token

    try:
        ttl = parse_ttl(args.ttl)
        secret = app_secret(args)
    except ValueError as e:
        return fail(str(e))
    try:
        text = token.issue(args.app, secret, args.channel, args.uid, args.zone,
                           split_list(args.privileges), ttl)
    except token.TokenError as e:
        return fail(f"cannot issue a token: {e.reason}")
    if args.json:
        print(json.dumps({"token": text, **grant_json(token.parse(text))}))
    else:
        print(text)
    return 0


def cmd_token_verify(args: argparse.Namespace) -> int:
    from skymesh import token

    need = split_list(args.need)
    unknown = [p for p in need if p not in token.PRIVILEGES]
    if unknown:
        return fail(f"--need: unknown privilege(s) {', '.join(unknown)}; known: "
                    f"{', '.join(token.PRIVILEGES)}")
    try:
        if args.app_secrets:
            try:
                table = json.loads(args.app_secrets.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise ValueError(f"--app-secrets {args.app_secrets}: {e}") from None
            if not isinstance(table, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
                raise ValueError(f"--app-secrets {args.app_secrets}: expected a JSON object "
                                 '{"APP": "SECRET", ...}')
            secrets = {k: v.encode() for k, v in table.items()}
        else:
            secret = app_secret(args)
            try:
                secrets = {token.parse(args.token).app: secret}
            except token.TokenError:
                secrets = {}  # verify reports the malformed token
    except ValueError as e:
        return fail(str(e))
    now = int(time.time())
    try:
        grant = token.verify(args.token, secrets, now=now, channel=args.channel,
                             zone=args.zone, need=need)
    except token.TokenError as e:
        if args.json:
            print(json.dumps({"valid": False, "code": e.code, "error_code": e.number,
                              "reason": e.reason}))
            return 1
        return fail(f"token refused: {e.code} ({e.number:#x}): {e.reason}", 1)
    data = {"valid": True, **grant_json(grant), "expires_in_s": grant.expires_at - now}
    if args.json:
        print(json.dumps(data))
    else:
        data["privileges"] = ",".join(data["privileges"])
        print("\n".join(f"{k:16} {v}" for k, v in data.items()))
    return 0


# -- certs -------------------------------------------------------------------------------------

def certs_dir(args: argparse.Namespace) -> Path:
    from skymesh import mesh

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


# -- admin -------------------------------------------------------------------------------------

def cmd_admin(args: argparse.Namespace) -> int:
    from skymesh import admin

    try:
        address = admin.controller_address(args.controller)
        if args.what == "status":
            data = admin.status(address)
        elif args.what == "regions":
            data = admin.regions(address)
        elif args.what == "links":
            data = admin.links(address)
        elif args.what == "routes":
            data = admin.routes(address, args.region, args.zone)
        elif args.what == "zones":
            data = admin.zones(address)
        elif args.what == "channels":
            data = admin.channels(address)
        elif args.what == "plan-failover":
            if bool(args.region) == bool(args.link):
                return fail("plan-failover: name a REGION or a --link SRC DST")
            data = admin.plan_failover(address, args.region, args.link, args.zone)
        elif args.what == "events":
            data = admin.events(address, time.time() - args.since)
        elif args.what in ("drain", "undrain"):
            data = admin.drain(address, args.region, args.what == "drain")
        else:
            data = admin.path(address, args.src, args.dst, args.zone)
    except admin.AdminError as e:
        return fail(str(e))
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(render(args.what, data))
    if args.what == "path" and not data["reachable"]:
        return 1
    return 0


def render(what: str, data) -> str:
    from skymesh.admin import table

    if what == "status":
        return "\n".join(f"{k:16} {v}" for k, v in data.items())
    if what == "regions":
        return table(["ID", "NAME", "COUNTRY", "LAT", "LON", "TAGS", "RELAY", "EDGE", "DRAINED"],
                     [[r["id"], r["name"], r["country"], f"{r['lat']:.2f}", f"{r['lon']:.2f}",
                       ",".join(r["tags"]), r["probe_addr"] or "-", r["edge_addr"] or "-",
                       "yes" if r["drained"] else "-"]
                      for r in data])
    if what == "events":
        if not data:
            return "no events"
        return table(["TIME", "REGION", "EVENT", "PEER", "ROUTES", "DETAIL"],
                     [[time.strftime("%H:%M:%S", time.localtime(e["at"]))
                       + f".{int(e['at'] * 1000) % 1000:03d}", e["region"], e["kind"],
                       e["peer"] or "-", e["routes"] or "-", e["detail"]] for e in data])
    if what in ("drain", "undrain"):
        state = "drained" if data["drained"] else "back in service"
        return (f"{data['region']} {state}; routes v{data['version']}; drained now: "
                f"{', '.join(data['drained_regions']) or 'none'}")
    if what == "channels":
        if not data:
            return "no channel has sessions"
        return table(["ZONE", "CHANNEL", "PUBLISHERS", "SUBSCRIBERS"],
                     [[c["zone"], c["channel"], ",".join(c["publisher_regions"]) or "-",
                       ",".join(c["subscriber_regions"]) or "-"] for c in data])
    if what == "links":
        return table(["SRC", "DST", "RTT_MS", "MIN_RTT_MS", "JITTER_MS", "LOSS", "STATE",
                      "SAMPLES", "COST_MS"],
                     [[x["src"], x["dst"], f"{x['rtt_ms']:.1f}", f"{x['min_rtt_ms']:.1f}",
                       f"{x['jitter_ms']:.2f}",
                       f"{x['loss']:.1%}", x["state"], x["samples"], f"{x['cost_ms']:.1f}"]
                      for x in data])
    if what == "routes":
        head = f"routes of {data['region']} (version {data['version']})\n"
        return head + table(["ZONE", "DST", "NEXT_HOP", "BACKUP", "COST_MS", "PATH"],
                            [[r["zone"], r["dst"], r["next_hop"],
                              f"{r['backup_next_hop'] or '-'} ({r['backup_kind']})",
                              f"{r['cost_ms']:.1f}", " > ".join(r["path"])]
                             for r in data["routes"]])
    if what == "zones":
        return f"policy: {data['policy']}\n" + table(
            ["ZONE", "REGIONS", "CONNECTED", "DESCRIPTION"],
            [[z["name"], len(z["regions"]), z["connected"], z["description"]]
             for z in data["zones"]])
    if what == "plan-failover":
        return render_plan(data)
    if not data["reachable"]:
        return (f"{data['src']} -> {data['dst']} in zone {data['zone']}: unreachable: "
                f"{data['reason']}")
    backup = (f"backup next hop {data['backup_next_hop']} ({data['backup_kind']}-protecting)"
              if data["backup_next_hop"] else "no loop-free backup")
    return (f"{' > '.join(data['path'])}\nzone {data['zone']}, one-way cost "
            f"{data['cost_ms']:.1f} ms, {len(data['path']) - 1} hop(s), {backup}, "
            f"routes v{data['version']}")


def render_plan(data: dict) -> str:
    from skymesh.admin import table

    changes = data["changes"]
    moved = [c for c in changes if c["reachable"]]
    lost = [c for c in changes if not c["reachable"]]
    lines = [f"failover plan for {data['failure']} (dry run, routes v{data['version']}):",
             f"  {len(moved)} of {data['routes_total']} routes between surviving regions "
             f"move, {len(lost)} become unreachable; {data['lost_endpoints']} routes start or "
             "end in the failed region"]
    if moved:
        lines.append(table(["ZONE", "SRC", "DST", "DELTA_MS", "OLD_PATH", "NEW_PATH"],
                           [[c["zone"], c["src"], c["dst"], f"{c['delta_ms']:+.1f}",
                             " > ".join(c["old_path"]), " > ".join(c["new_path"])]
                            for c in moved]))
    if lost:
        lines.append("unreachable:")
        lines.append(table(["ZONE", "SRC", "DST", "REASON"],
                           [[c["zone"], c["src"], c["dst"], c["reason"]] for c in lost]))
    return "\n".join(lines)
