"""Edge resolver speed (issue 16): a controller core with N regions' relays connected (their
client edges, loads and measured links), a City database of clients around them (built with
mmdb-writer), and the EdgeResolver.

    python bench/resolver.py [--regions 300] [--lookups 20000] [--rate 1000] [--seconds 10]
        [--json]

Printed, from one run:

  in process   lookups/s of Resolver.resolve (token checked, kept until it expires; address
               placed; edges ranked against the index, the ranking kept per location until
               the index changes), beside the same with no ranking kept (ranked again from
               the client's shortlist, which the index keeps while the same regions are
               usable: a client right after loads and RTTs moved), with nothing kept (the
               shortlist made afresh too: a client at a location not seen before), and the
               baseline: every lookup verifying the token, placing the address and ranking
               without the index (every region considered afresh: skymesh.edgerank.rank)
  over gRPC    p50/p99/max latency of Resolve at --rate requests/s for --seconds, TLS with
               the controller's certificate (no client certificate), the requests from a
               process of their own on this machine, and how many were answered. Meanwhile
               every relay reports its load once a second (a new one each time), as in a
               live mesh: the index changes about every second and the rankings and replies
               kept are dropped with it, so that the figure includes re-indexing and
               ranking clients again (--link-reports: the reports carry the relays' links,
               their RTTs moved a little, and the core's work on them shares the event
               loop, as in a controller). The load generator runs without the garbage
               collector (its own pauses would be counted as the resolver's)

Aims (the issue's): at least 20,000 lookups/s in process; p99 under 5 ms over gRPC. Exits 0
even when an aim is missed: it is a report.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from geoipdb import build_city_db  # noqa: E402

from controller.core import Controller, Hello  # noqa: E402
from controller.resolver import Resolver  # noqa: E402
from controller.server import serve_resolver  # noqa: E402
from controller.topology import STATE_CODES, SampleBatch  # noqa: E402
from skymesh import certs, identity  # noqa: E402
from skymesh import token as tokens  # noqa: E402
from skymesh.catalogue import Region  # noqa: E402
from skymesh.cli.common import run_loop  # noqa: E402
from skymesh.cli.serve import settle_controller_heap  # noqa: E402
from skymesh.edgerank import rank  # noqa: E402
from skymesh.linkstate import TO_WIRE, UP  # noqa: E402
from skymesh.net.tls import TlsFiles  # noqa: E402
from skymesh.policy import Policy, Zone  # noqa: E402
from skymesh.v1 import resolver_pb2, resolver_pb2_grpc  # noqa: E402

AIMS = {"lookups_per_s": 20_000.0, "grpc_p99_ms": 5.0}
UNIX = int(time.time())


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build(n: int, tmp: Path, seed: int = 1):
    """(the core, its resolver, a token, client addresses the database places)."""
    rng = random.Random(seed)
    catalogue = {}
    for i in range(n):
        rid = f"r{i:04d}"
        catalogue[rid] = Region(id=rid, name=rid, country="XX", lat=rng.uniform(-40, 62),
                                lon=rng.uniform(-180, 180))
    ids = sorted(catalogue)
    policy = Policy({"global": Zone("global", frozenset(ids)),
                     "half": Zone("half", frozenset(ids[::2]))})
    key = tokens.generate_key()
    core = Controller(catalogue, policy, apps={"demo": (tokens.public_key_of(key),)}, now=0.0)
    for i, rid in enumerate(ids):
        s = core.connect(Hello(rid, "n1", f"127.0.0.1:{10000 + i}",
                               edge_addr=f"127.0.0.1:{20000 + i}"), lambda m: None, 0.0, UNIX)
        peers = rng.sample(ids, min(16, n - 1))
        core.on_report(s, [{"dst": p, "rtt_ms": 20.0, "min_rtt_ms": rng.uniform(5, 250),
                            "jitter_ms": 0.0, "loss": 0.0, "window": 10, "samples": 10,
                            "lost": 0, "state": "up"} for p in peers if p != rid],
                       {"edge.sessions": rng.randrange(200)}, 0.0)
    # a /24 of clients around every region, and one in the middle of nowhere
    networks = {f"{20 + i // 250}.{i % 250}.0.0/24": (
        "XX", f"near {rid}", catalogue[rid].lat + rng.uniform(-1, 1),
        catalogue[rid].lon + rng.uniform(-1, 1), rng.choice([10, 50, 100, 500]))
        for i, rid in enumerate(ids)}
    from skymesh.geoip import CityDatabase

    db = CityDatabase(build_city_db(tmp / "city.mmdb", networks))
    clients = [f"{20 + i // 250}.{i % 250}.0.{rng.randrange(1, 255)}" for i in range(n)]
    token = tokens.issue("demo", key, "live", "viewer", "global", ["join"], 3600, now=UNIX)
    return core, Resolver(core, db), token, clients


def lookups_per_s(resolver: Resolver, token: str, clients: list[str], lookups: int,
                  placed_afresh: bool = False) -> float:
    """Resolver.resolve's lookups/s; `placed_afresh`: the index's shortlists forgotten
    before each (every client as if at a location never seen)."""
    resolver.index(0.0)
    t = time.perf_counter()
    for i in range(lookups):
        if placed_afresh:
            resolver.edges.placements.clear()
        resolver.resolve(token, clients[i % len(clients)], 3, 0.5, UNIX)
    return lookups / (time.perf_counter() - t)


def in_process(resolver: Resolver, token: str, clients: list[str], lookups: int) -> dict:
    ours = lookups_per_s(resolver, token, clients, lookups)
    unkept = Resolver(resolver.core, resolver.geoip, rankings_kept=0)
    afresh = lookups_per_s(unkept, token, clients, lookups)
    cold = lookups_per_s(unkept, token, clients, lookups, placed_afresh=True)
    regions, where = resolver.edges.regions, []
    for c in clients[:200]:
        p = resolver.geoip.locate(c)
        where.append(p)
    measured = resolver.edges.measured
    base_n = min(lookups, 2000)
    t = time.perf_counter()
    for i in range(base_n):
        tokens.verify(token, resolver.core.apps, now=UNIX)
        resolver.geoip.locate(clients[i % len(clients)])
        rank(regions, where[i % len(where)], zone="global", count=3, measured=measured)
    baseline = base_n / (time.perf_counter() - t)
    return {"lookups_per_s": round(ours), "unkept_lookups_per_s": round(afresh),
            "cold_lookups_per_s": round(cold), "baseline_lookups_per_s": round(baseline)}


async def over_grpc(resolver: Resolver, token: str, clients: list[str], rate: float,
                    seconds: float, tls: TlsFiles, tmp: Path, links: bool = False) -> dict:
    """The resolver served here; the requests from a process of their own (this one's event
    loop serves them)."""
    server, port = await serve_resolver("127.0.0.1:0", tls, lambda: resolver)
    spec = tmp / "client.json"
    spec.write_text(json.dumps({"address": f"127.0.0.1:{port}", "ca": str(tls.ca),
                                "token": token, "clients": clients, "rate": rate,
                                "seconds": seconds}))
    relays = asyncio.create_task(reporting(resolver.core, links))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(spec), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    relays.cancel()
    await server.stop(None)
    if proc.returncode:
        raise RuntimeError(f"the load generator exited with {proc.returncode}")
    return json.loads(out)


async def reporting(core: Controller, links: bool = False, every_s: float = 1.0,
                    seed: int = 2) -> None:
    """Every relay's report every `every_s`, the relays spread over the interval, as a live
    mesh's: its load (client sessions) anew, so that the index moves every second; with
    `links`, its links too, their RTTs moved by up to 3% (as the relay service hands them
    to the core: columns), the core's own work on them done on the same event loop."""
    rng = random.Random(seed)
    t = core.topology
    sessions = list(core.sessions.values())
    measured = {}
    for s in sessions:
        i = t.index[s.relay.region]
        js = np.flatnonzero((t.state[i] == STATE_CODES[UP]) & (t.min_rtt[i] > 0))
        measured[s] = ([t.names[j] for j in js], t.min_rtt[i, js].tolist())
    start, k = time.monotonic(), 0
    while True:
        for s in sessions:
            k += 1
            if (wait := start + k * every_s / len(sessions) - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            batch = SampleBatch()  # by change: no link moved
            if links:
                dst, rtts = measured[s]
                moved = [r * rng.uniform(0.97, 1.03) for r in rtts]
                n = len(dst)
                batch = SampleBatch(dst, [r + 5 for r in moved], moved, [0.0] * n, [0.0] * n,
                                    [10] * n, [10] * n, [0] * n, [TO_WIRE[UP]] * n)
            core.on_report(s, batch, {"edge.sessions": rng.randrange(200)}, time.monotonic(),
                           full=links)


async def load(address: str, ca: str, token: str, clients: list[str], rate: float,
               seconds: float) -> dict:
    """Resolve requests at `rate` for `seconds`; their latencies."""
    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes())
    latencies: list[float] = []
    failed = 0
    async with grpc.aio.secure_channel(address, creds) as channel:
        stub = resolver_pb2_grpc.EdgeResolverStub(channel)
        await stub.Resolve(resolver_pb2.ResolveRequest(token=token, address=clients[0]))

        async def one(i: int) -> None:
            nonlocal failed
            t = time.perf_counter()
            try:
                await stub.Resolve(resolver_pb2.ResolveRequest(
                    token=token, address=clients[i % len(clients)], count=3), timeout=5)
                latencies.append((time.perf_counter() - t) * 1000)
            except grpc.aio.AioRpcError:
                failed += 1
        pending: set[asyncio.Task] = set()  # only those under way: done ones are let go
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(one(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": total, "answered": len(latencies), "failed": failed,
            "grpc_p50_ms": round(q[49], 2), "grpc_p99_ms": round(q[98], 2),
            "grpc_max_ms": round(latencies[-1], 2) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regions", type=int, default=300)
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--link-reports", action="store_true",
                   help="the relays' reports during the gRPC run carry their links too (RTTs "
                   "moved), which the core takes in on the resolver's event loop")
    p.add_argument("--json", action="store_true")
    p.add_argument("--client", type=Path, help=argparse.SUPPRESS)  # the load generator
    args = p.parse_args(argv)
    if args.client:
        spec = json.loads(args.client.read_text())
        # the load generator's collections would stall its event loop and be counted as the
        # resolver's latency (tens of ms with ten thousand calls' objects about): none, for a
        # run of seconds
        gc.collect()
        gc.freeze()
        gc.disable()
        print(json.dumps(run_loop(load(**spec))))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="skymesh-bench-resolver-"))
    try:
        core, resolver, token, clients = build(args.regions, tmp)
        out = {"regions": args.regions, "link_reports": args.link_reports}
        out.update(in_process(resolver, token, clients, args.lookups))
        say(f"  in process: {out['lookups_per_s']} lookups/s (no ranking kept: "
            f"{out['unkept_lookups_per_s']}; placed afresh: {out['cold_lookups_per_s']}; "
            f"without the index: {out['baseline_lookups_per_s']})")
        certs.create_ca(tmp / "ca")
        mesh = certs.mesh_of(certs.load_cert(tmp / "ca" / certs.CA_CERT))
        cert, key = certs.issue_identity(tmp / "ca", tmp / "ca",
                                         identity.controller(mesh, "bench"), ["127.0.0.1"])
        tls = TlsFiles(tmp / "ca" / certs.BUNDLE, cert, key)
        settle_controller_heap()  # as the controller process does once serving
        # on uvloop, as `skymesh controller` runs
        out.update(run_loop(over_grpc(resolver, token, clients, args.rate, args.seconds,
                                      tls, tmp, args.link_reports)))
        out["aims"] = {"lookups_per_s": out["lookups_per_s"] >= AIMS["lookups_per_s"],
                       "grpc_p99_ms": out["grpc_p99_ms"] is not None
                       and out["grpc_p99_ms"] < AIMS["grpc_p99_ms"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        aims = " ".join(f"{k}:{'PASS' if v else 'MISS'}" for k, v in out["aims"].items())
        print(f"edge resolver, {out['regions']} regions, this machine\n"
              f"  in process   {out['lookups_per_s']} lookups/s (no ranking kept: "
              f"{out['unkept_lookups_per_s']}; every client placed afresh too: "
              f"{out['cold_lookups_per_s']}; one-shot ranking without the index: "
              f"{out['baseline_lookups_per_s']}; aim >= {AIMS['lookups_per_s']:.0f})\n"
              f"  over gRPC    p50 {out['grpc_p50_ms']} ms, p99 {out['grpc_p99_ms']} ms, max "
              f"{out['grpc_max_ms']} ms at {args.rate:g} requests/s for {args.seconds:g} s, "
              f"TLS, {'loads and links' if args.link_reports else 'loads'} reported meanwhile "
              f"({out['answered']}/{out['requests']} answered; "
              f"aim p99 < {AIMS['grpc_p99_ms']:g} ms)\n"
              f"  aims         {aims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
