"""`skymesh up`, `skymesh down` and `skymesh mesh`: the local mesh from the command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from skymesh.cli.common import (
    fail,
    load_inputs,
)
from skymesh.linkstate import LINK


def add_parsers(sub) -> None:
    up = sub.add_parser("up", help="start the local mesh: a controller and one relay per region",
                        description="Start a controller and one relay per region (or "
                        "--nodes-per-region of them) on loopback addresses, with the "
                        "wide-area network emulated in the relays' send path, and wait until "
                        "routes have converged.")
    up.add_argument("--regions", type=Path, help="region catalogue directory (default: regions/)")
    up.add_argument("--only", help="comma-separated region ids to start (default: all)")
    up.add_argument("--latency-matrix", type=Path, metavar="CSV",
                    help="measured RTTs, header src,dst,rtt_ms[,loss]; a missing pair has no "
                    "direct link (default: latency from geography)")
    up.add_argument("--policy", type=Path, metavar="FILE",
                    help="residency policy (default: policy.yaml beside the region files, "
                    "else one zone of every region)")
    up.add_argument("--seed", type=int, default=0, help="seed of the geography model")
    up.add_argument("--geoip-db", type=Path, metavar="FILE",
                    help="a MaxMind-format City database the controllers' edge resolvers "
                    "place clients with (`skymesh resolve`; default: none, edges by load)")
    up.add_argument("--nodes-per-region", type=int, default=1, metavar="N",
                    help="relay nodes per region, n1..nN, each a process on its own loopback "
                    "address with its own client edge (default: %(default)s)")
    up.add_argument("--controllers", type=int, default=1, metavar="N",
                    help="controller replicas on etcd (one leads, every one serves; "
                    "default: %(default)s, a controller with a state file); above 1, a local "
                    "etcd is started in $SKYMESH_HOME/etcd unless --store is given")
    up.add_argument("--store", metavar="etcd://HOST:PORT[,...]",
                    help="the etcd the replicas keep their state on (default with "
                    "--controllers: a local one)")
    up.add_argument("--probe-interval", type=float, metavar="S",
                    help="seconds between the probes that measure every link (default: 1 "
                    "for up to 12 relays; more relays sharing one small machine get 2)")
    up.add_argument("--neighbour-probe-interval", type=float,
                    default=LINK.neighbour_probe_interval_s, metavar="S",
                    help="seconds between probes of the links traffic uses (next hops and "
                    "their backups): with --down-after, how soon a dead link is found "
                    "(default: %(default)s)")
    up.add_argument("--down-after", type=int, default=LINK.down_after, metavar="N",
                    help="missed probes in a row that make a link down (default: %(default)s)")
    up.add_argument("--no-dashboard", action="store_true",
                    help="do not start the live map (`skymesh dashboard`, on a free loopback "
                    "port; its URL is printed and in `admin status --json`)")
    up.add_argument("--detach", action="store_true",
                    help="return once converged and leave the mesh running (`skymesh down`)")
    up.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for convergence (default: 120)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    up.add_argument("--demo", action="store_true",
                    help="once converged, stream from one region to several others and show "
                    "the end-to-end latency (as `skymesh demo`)")
    up.add_argument("--log-level", default="info", type=str.lower,
                    choices=("debug", "info", "warning", "error", "critical"))
    up.add_argument("--log-format", default="text", type=str.lower, choices=("text", "json"),
                    help="the processes' logs (in $SKYMESH_HOME/logs): text lines, or one "
                    "JSON object a line (default: %(default)s)")
    up.add_argument("--edge-limits", metavar="NAME=VALUE,...",
                    help="the relays' client edge flood limits (as for `skymesh relay`)")
    up.add_argument("--insecure", action="store_true",
                    help="INSECURE: the controller, relays and admin commands speak plaintext "
                    "gRPC without certificates (default: mutual TLS with certificates of the "
                    "mesh's CA, made in $SKYMESH_HOME/certs)")
    up.set_defaults(run=cmd_up)

    down = sub.add_parser("down", help="stop the local mesh started by `skymesh up`")
    down.add_argument("--json", action="store_true")
    down.set_defaults(run=cmd_down)

    group = sub.add_parser("mesh", help="the local mesh's processes: list, kill or restart "
                           "the controller, a region's relays or one relay node")
    msub = group.add_subparsers(title="mesh commands", metavar="COMMAND")
    ps = msub.add_parser("ps", help="the processes of the local mesh and whether they run")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.set_defaults(run=cmd_mesh, what="ps")
    for name, help_ in (("kill", "SIGKILL, as a crash would end it"),
                        ("restart", "start again as `up` did (a region: its nodes not "
                         "running)")):
        a = msub.add_parser(name, help=f"{help_}: the controller, a region's relay nodes or "
                            "one node")
        a.add_argument("which", metavar="WHICH",
                       help="controller (of replicas, every one), a replica (c2), etcd (the "
                       "local one of replicas), a region (every node of it: fra) or a node "
                       "(fra/n2)")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(run=cmd_mesh, what=name)


def cmd_up(args: argparse.Namespace) -> int:
    from skymesh import certs, wan
    from skymesh.catalogue import CatalogueError
    from skymesh.cli import admin, mesh
    from skymesh.config import ConfigError
    from skymesh.net.tls import INSECURE_WARNING
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
    if args.geoip_db:
        from skymesh.geoip import CityDatabase, GeoIPError

        try:
            CityDatabase(args.geoip_db).close()
        except GeoIPError as e:
            return fail(f"not starting the mesh: --geoip-db {e}")
    per_region = args.nodes_per_region
    if per_region < 1:
        return fail("--nodes-per-region must be 1 or more")
    if args.controllers < 1:
        return fail("--controllers must be 1 or more")
    if args.edge_limits:
        from relay.edgesession import parse_limits

        try:
            parse_limits(args.edge_limits)
        except ValueError as e:
            return fail(f"--edge-limits: {e}")
    running = mesh.running_state()
    if running:
        return fail(f"a local mesh is already running (controller {running['controller']}, "
                    f"state {mesh.state_file()}); stop it with `skymesh down`")
    mesh.home().mkdir(parents=True, exist_ok=True)
    wan_file = mesh.home() / "wan.json"
    wan.dump_model(model, wan_file)
    source = args.latency_matrix or "geography"
    say = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    relays = len(regions) * per_region
    nodes_said = f" ({per_region} nodes in each of {len(regions)} regions)" \
        if per_region > 1 else ""
    controllers_said = (f"{args.controllers} controller replicas on "
                        f"{args.store or 'a local etcd'}" if args.controllers > 1 or args.store
                        else "a controller")
    say(f"starting {controllers_said} and {relays} relays{nodes_said} (latency from "
        f"{source}; configuration files in {mesh.home() / 'config'}, logs in "
        f"{mesh.home() / 'logs'})")
    t0 = time.monotonic()
    only = list(regions) if args.only else None
    try:
        # every node is a process of this one machine: the load is theirs, not the regions'
        measure = args.probe_interval or mesh.probe_interval(relays)
        m = mesh.start(regions, args.regions or mesh.default_regions_dir(), only, wan_file,
                       args.log_level,
                       {"probe": {"interval": measure,
                                  "neighbour_interval": args.neighbour_probe_interval,
                                  "down_after": args.down_after},
                        "policy": args.policy.resolve() if args.policy else None,
                        "resolver": {"geoip_db": args.geoip_db.resolve()
                                     if args.geoip_db else None}},
                       insecure=args.insecure,
                       edge_limits=mesh.limits_mapping(args.edge_limits)
                       if args.edge_limits else None, nodes_per_region=per_region,
                       controllers=args.controllers, store=args.store,
                       log_format=args.log_format)
    except (RuntimeError, OSError) as e:
        return fail(str(e))
    except (certs.CertError, ConfigError) as e:
        return fail(f"not starting the mesh: {e}")
    if args.insecure:
        say("WARNING: " + INSECURE_WARNING.format(what=m.controller))
        admin.use_credentials(None)
    else:
        admin.use_credentials(mesh.mesh_identities([])["admin"])
    try:
        status = wait_converged(m.controller, len(regions), args.timeout, say, m,
                                per_region)
    except KeyboardInterrupt:
        mesh.stop(m.state, progress=say)
        return 130
    elapsed = time.monotonic() - t0
    if status is None:
        mesh.stop(m.state, progress=say)
        return fail(f"routes did not converge in {args.timeout:.0f} s; see the logs in "
                    f"{mesh.home() / 'logs'}")
    url = None if args.no_dashboard else mesh.start_dashboard(m.state)
    if url is None and not args.no_dashboard:
        say(f"the dashboard did not start; see {mesh.home() / 'logs' / 'dashboard.log'}")
    result = {**status, "nodes_per_region": per_region, "converge_s": round(elapsed, 1),
              "state": str(mesh.state_file()), "dashboard_url": url}
    if args.json:
        print(json.dumps(result))
    else:
        relays_said = (f"{len(regions)} regions of {per_region} relay nodes" if per_region > 1
                       else f"{status['relays']} relays")
        print(f"converged in {elapsed:.1f} s: {relays_said}, "
              f"{status['links_up']} links up, route version {status['route_version']}")
        what = "controller replicas" if "," in m.controller else "controller"
        print(f"{what} at {m.controller}; try `skymesh admin status`, "
              "`skymesh admin path SRC DST`")
        if url:
            print(f"live map: {url}")
        if per_region > 1:
            print(f"nodes n1..n{per_region} of each region: `skymesh admin regions`; kill one "
                  "with `skymesh mesh kill REGION/NODE`")
    if args.demo:
        demo_stream(m.controller, say)
    if args.detach:
        return 0
    say("running; press Ctrl-C to stop")
    return hold(m)


def demo_stream(controller: str, say) -> None:
    """The demo stream after `up --demo`; a failure is reported, the mesh keeps running."""
    from sdk.errors import SkymeshError
    from skymesh.cli import admin, streams

    args = streams.parser_defaults("demo")
    try:
        say(streams.render_demo(streams.run_demo(controller, args, say)))
    except (TimeoutError, admin.AdminError, SkymeshError, OSError) as e:
        say(f"the demo stream failed: {type(e).__name__}: {e}")


def nodes_connected(regions: list[dict]) -> int:
    """Relay nodes connected, from `admin.regions`: a region's listed nodes, or, from a
    controller that lists none, one for a connected region."""
    return sum(len(r.get("nodes") or ()) or int(r["connected"]) for r in regions)


def wait_converged(controller: str, relays: int, timeout: float, say, m,
                   nodes_per_region: int = 1) -> dict | None:
    """The controller's status once every relay node is connected and routes have converged
    (None: not within `timeout`). `relays`: regions, each of `nodes_per_region` nodes."""
    from skymesh.cli import admin

    deadline = time.monotonic() + timeout
    tty = sys.stdout.isatty() and say is print
    last = ""
    expected = relays * nodes_per_region
    while time.monotonic() < deadline:
        dead = [n for n, p in m.processes.items() if p.poll() is not None]
        if all(n in dead for n in mesh_controllers(m)):
            raise RuntimeError("the controller exited; see its log")
        try:
            s = admin.status(controller)
            # the status counts relays as the controller does (by region or by node); a
            # region's nodes are what tells that every process of several per region is in
            connected = nodes_connected(admin.regions(controller)) if nodes_per_region > 1 \
                else s["relays"]
        except admin.AdminError:
            time.sleep(0.2)
            continue
        line = (f"relays {connected}/{expected} connected, links measured "
                f"{s['links_measured']}/{relays * (relays - 1)}, routes v{s['route_version']} "
                f"acked by {s['relays_acked']}/{s['relays']}")
        if dead:
            line += f", exited: {', '.join(dead)}"
        if tty:
            print("\r" + line.ljust(len(last)), end="", flush=True)
        elif line != last:
            say(line)
        last = line
        if s["converged"] and connected == expected:
            if tty:
                print()
            return s
        time.sleep(0.25)
    if tty:
        print()
    return None


def mesh_controllers(m) -> list[str]:
    """The names of the mesh's controller processes: "controller", or its replicas."""
    from skymesh.cli import mesh

    return list(mesh.controller_pids(m.state))


def hold(m) -> int:
    from skymesh.cli import mesh

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping:
            if all(m.processes[n].poll() is not None for n in mesh_controllers(m)):
                print("the controller exited; stopping the mesh", file=sys.stderr)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    n = mesh.stop(m.state)
    print(f"stopped {n} processes")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from skymesh.cli import mesh

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


def cmd_mesh(args: argparse.Namespace) -> int:
    from skymesh.cli import mesh

    # not only a running one: a mesh whose controller was killed is restarted from here
    state = mesh.read_state()
    if state is None:
        return fail(f"no local mesh ({mesh.state_file()} not found); start one with "
                    "`skymesh up`")
    if args.what == "ps":
        rows = mesh_processes(state)
        if args.json:
            print(json.dumps(rows))
        else:
            from skymesh.cli.render import table

            print(table(["NAME", "REGION", "NODE", "ADDRESS", "PID", "RUNNING"],
                        [[r["name"], r["region"] or "-", r["node"] or "-", r["address"],
                          r["pid"], "yes" if r["running"] else "no"] for r in rows]))
        return 0
    which = args.which
    replicas = state.get("replicas", {})
    if which == "etcd" and not state["pids"].get("etcd"):
        return fail("this mesh has no local etcd (`skymesh up --controllers N` starts one)")
    if which not in ("controller", "etcd") and which not in replicas and \
            not mesh.relay_keys(state, which):
        return fail(f"no relay {which!r} in the local mesh; relays: "
                    + ", ".join(state["pids"]["relays"])
                    + (f"; controller replicas: {', '.join(replicas)}" if replicas else ""))
    if args.what == "kill":
        names = ([which] if which in replicas or which == "etcd" else list(replicas)
                 or ["controller"] if which == "controller" else mesh.relay_keys(state, which))
        killed = mesh.kill(state, which)
        out = {"which": which, "killed": killed, "processes": names}
        text = (f"killed {', '.join(names)}" if killed
                else f"{', '.join(names)}: not running")
    else:
        try:
            pid = mesh.restart(state, which)
        except (RuntimeError, OSError) as e:
            return fail(str(e))
        out = {"which": which, "pid": pid}
        text = f"restarted {which} (pid {pid})"
    print(json.dumps(out) if args.json else text)
    return 0


def mesh_processes(state: dict) -> list[dict]:
    """The controller and every relay node of a local mesh's state, and whether each runs."""
    from skymesh import nodes
    from skymesh.cli import mesh

    replicas = state.get("replicas", {})
    rows = [{"name": name, "region": "", "node": "",
             "address": replicas[name]["address"] if replicas else state["controller"],
             "pid": pid, "running": mesh.alive(pid)}
            for name, pid in mesh.controller_pids(state).items()]
    rows += [{"name": "etcd", "region": "", "node": "", "address": state.get("store", ""),
              "pid": pid, "running": mesh.alive(pid)} for pid in state["pids"].get("etcd", [])]
    known = state.get("relay_nodes", {})
    for key, pid in state["pids"]["relays"].items():
        region, node = nodes.parse(key)
        info = known.get(key, {})
        rows.append({"name": key, "region": region, "node": node or info.get("node", ""),
                     "address": info.get("address", ""), "pid": pid,
                     "running": mesh.alive(pid)})
    return rows
