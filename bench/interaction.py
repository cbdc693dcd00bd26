"""Live-commerce interactions on the local mesh: co-hosted channels and 1:1 calls.

    python bench/interaction.py [--calls 10] [--pairs london:frankfurt,london:tokyo] [--json]

Co-hosting: host A (london, channel showA) links to host B (tokyo, showB); viewers of each
channel in several regions receive both hosts' frames (each frame carries its host and send
time). Printed: the host-to-host latency each way, and per viewer region the display skew,
the difference of the send times of the two hosts' latest frames at each arrival (a viewer
shows both at once), p50 and p99.

Starts a local mesh of the pairs' regions and a few between them (latencies from geography,
emulated in the relays' send path), then for each pair of regions places `--calls` calls one
after the other (`skymesh call`: two sessions join a fresh private channel at once, each
sealing test frames with SFrame under a key only they hold) and prints, per pair, the time
from the call to the
first frame received on each side, p50 and p99, beside the aim (the route's one-way cost plus
150 ms), the latency each way, and what sealing costs per 1,000-byte frame.

Danmaku: the most viewer sessions one edge core holds while every viewer comments once a
second and is shown the thinned stream, with the comments' delivery p99 under 500 ms, and the
host's messages' p99 beside it (bench/danmaku.py, which runs on its own too; `--no-danmaku`
skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import danmaku  # noqa: E402
from skymesh.cli import admin  # noqa: E402
from skymesh.cli.call import run_call, seal_cost_us  # noqa: E402
from skymesh.cli.common import run_loop  # noqa: E402
from skymesh.cli.drillstats import percentile  # noqa: E402

AIM_EXTRA_MS = 150.0  # time to first frame: under the route's one-way cost plus this
DEFAULT_PAIRS = "london:frankfurt,london:tokyo,singapore:sao-paulo"
TRANSIT = ("ashburn", "amsterdam", "hong-kong")  # regions between them, for the overlay
COHOST = ("london", "tokyo")  # host A's region, host B's
VIEWERS = ("frankfurt", "singapore", "sao-paulo")  # a viewer of each channel in each
HOST_FRAME = struct.Struct("!4sBQQ")  # magic, host (0: A, 1: B), sequence, send time (ns)


async def cohost(address: str, seconds: float = 6.0, rate: float = 30.0) -> dict:
    """Link two channels (one host each) and measure what their hosts and viewers see."""
    from contextlib import AsyncExitStack

    from skymesh.cli import traffic

    relay = (*traffic.ALL_PRIVILEGES, "relay")
    hosts_got: dict[int, list[float]] = {0: [], 1: []}  # host -> latencies of the other's
    skew: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        async def session(region, channel, uid, privileges):
            edges = await asyncio.to_thread(traffic.resolve_edges, address, region)
            tok = traffic.local_token("demo", channel, uid, "global", privileges=privileges)
            s, _ = await traffic.connect_edges(stack, edges, tok, channel)
            await asyncio.wait_for(s.join(), 10)
            return s
        host_a = await session(COHOST[0], "showA", "hostA", relay)
        host_b = await session(COHOST[1], "showB", "hostB", relay)
        viewers = {(r, ch): await session(r, ch, f"v-{r}-{ch}", ("join",))
                   for r in VIEWERS for ch in ("showA", "showB")}
        link = await host_a.link("showB", traffic.local_token("demo", "showB", "hostA",
                                                              "global", privileges=relay))
        if link["state"] != "linked":
            raise RuntimeError(f"the link failed: {link}")
        await asyncio.sleep(2.0)  # the controller lists the linking edge in showB's members

        async def publish(s, host: int, until: float) -> None:
            seq = 0
            while time.monotonic() < until:
                seq += 1
                s.publish_media(HOST_FRAME.pack(b"COHO", host, seq, time.time_ns())
                                + bytes(500))
                await asyncio.sleep(1 / rate)

        async def watch(s, key) -> None:
            latest = {0: None, 1: None}
            async for data in s.media():
                if len(data) < HOST_FRAME.size or not data.startswith(b"COHO"):
                    continue
                _, host, _, sent = HOST_FRAME.unpack_from(data)
                now = time.time_ns()
                if key in (0, 1):  # a host: the other's frames
                    if host != key:
                        hosts_got[key].append((now - sent) / 1e6)
                    continue
                latest[host] = sent
                if latest[0] is not None and latest[1] is not None:
                    skew.setdefault(key[0], []).append(abs(latest[0] - latest[1]) / 1e6)

        until = time.monotonic() + seconds
        watchers = [asyncio.ensure_future(watch(host_a, 0)),
                    asyncio.ensure_future(watch(host_b, 1))]
        watchers += [asyncio.ensure_future(watch(s, k)) for k, s in viewers.items()]
        try:
            await asyncio.gather(publish(host_a, 0, until), publish(host_b, 1, until))
            await asyncio.sleep(0.5)  # what is in flight (a bound, not a condition)
        finally:
            for w in watchers:
                w.cancel()
    return {"hosts": {"a": COHOST[0], "b": COHOST[1]},
            "host_to_host_ms": {"a_to_b": {"p50": pct(hosts_got[1], 50),
                                           "p99": pct(hosts_got[1], 99)},
                                "b_to_a": {"p50": pct(hosts_got[0], 50),
                                           "p99": pct(hosts_got[0], 99)}},
            "skew_ms": {r: {"p50": pct(v, 50), "p99": pct(v, 99), "samples": len(v)}
                        for r, v in sorted(skew.items())}}


def skymesh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skymesh", *args], text=True,
                          capture_output=True, timeout=timeout)


def pct(values: list[float], p: float) -> float | None:
    v = percentile(values, p)
    return None if v is None else round(v, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per pair (default: "
                        "%(default)s)")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, metavar="A:B,...",
                        help="pairs of regions (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds of each call")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-danmaku", action="store_true",
                        help="skip the danmaku capacity search")
    storm = parser.add_argument_group("danmaku capacity (bench/danmaku.py)")
    danmaku.add_arguments(storm)
    args = parser.parse_args(argv)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else \
        (lambda m: print(m, flush=True))
    pairs = [tuple(p.split(":", 1)) for p in args.pairs.split(",") if p]

    with tempfile.TemporaryDirectory(prefix="skymesh-interaction-") as work:
        os.environ["SKYMESH_HOME"] = str(Path(work) / "home")
        t0 = time.monotonic()
        only = sorted({r for pair in pairs for r in pair} | set(TRANSIT) | set(COHOST)
                      | set(VIEWERS))
        up = skymesh("up", "--detach", "--json", "--no-dashboard", "--only", ",".join(only))
        if up.returncode != 0:
            print(f"skymesh up failed:\n{up.stderr}", file=sys.stderr)
            return 1
        rows = []
        try:
            address = json.loads(up.stdout)["controller"]
            say(f"local mesh: {admin.status(address)['relays']} relays, up in "
                f"{time.monotonic() - t0:.1f} s")
            co = run_loop(cohost(address))
            h = co["host_to_host_ms"]
            say(f"co-host {COHOST[0]} <-> {COHOST[1]}: host to host p50 "
                f"{h['a_to_b']['p50']} ms ({COHOST[0]}->{COHOST[1]}), "
                f"{h['b_to_a']['p50']} ms back; p99 {h['a_to_b']['p99']} / "
                f"{h['b_to_a']['p99']} ms")
            for region, s in co["skew_ms"].items():
                say(f"  display skew at a viewer in {region}: p50 {s['p50']} ms, "
                    f"p99 {s['p99']} ms ({s['samples']} frames)")
            for src, dst in pairs:
                first = {"caller": [], "callee": []}
                lat = {"there": [], "back": []}
                cost = None
                for _ in range(args.calls):
                    d = run_loop(run_call(address, src, dst, args.duration, 50.0, True))
                    there, back = d[f"{src}->{dst}"], d[f"{dst}->{src}"]
                    cost = d["route"]["one_way_cost_ms"]
                    if there["first_frame_s"] is not None:
                        first["callee"].append(there["first_frame_s"] * 1000)
                    if back["first_frame_s"] is not None:
                        first["caller"].append(back["first_frame_s"] * 1000)
                    if there["latency_ms"]["p50"] is not None:
                        lat["there"].append(there["latency_ms"]["p50"])
                    if back["latency_ms"]["p50"] is not None:
                        lat["back"].append(back["latency_ms"]["p50"])
                both = first["caller"] + first["callee"]
                aim = cost + AIM_EXTRA_MS
                row = {"pair": f"{src}->{dst}", "calls": args.calls,
                       "one_way_cost_ms": round(cost, 1), "aim_ms": round(aim, 1),
                       "first_frame_ms": {"p50": pct(both, 50), "p99": pct(both, 99)},
                       "latency_p50_ms": {"there": pct(lat["there"], 50),
                                          "back": pct(lat["back"], 50)},
                       "within_aim": bool(both) and pct(both, 99) <= aim}
                rows.append(row)
                say(f"{row['pair']}: first frame p50 {row['first_frame_ms']['p50']} ms, "
                    f"p99 {row['first_frame_ms']['p99']} ms (aim {aim:.0f} ms: "
                    f"{'PASS' if row['within_aim'] else 'MISS'}), latency p50 "
                    f"{row['latency_p50_ms']['there']}/{row['latency_p50_ms']['back']} ms "
                    f"each way, route one-way cost {cost:.1f} ms")
        finally:
            skymesh("down", timeout=120)
    sealing = seal_cost_us()
    say(f"sealing a 1000-byte frame: {sealing['seal_us']} us, opening {sealing['open_us']} us, "
        f"{sealing['overhead_bytes']} bytes more")
    storm = None
    if not args.no_danmaku:
        say("danmaku: viewer sessions per edge core (each trial: a fresh edge on its own core, "
            "load generators on the other)")
        storm = danmaku.capacity(args, say=lambda m: say(f"  {m}"))
        say(danmaku.summary(storm))
    if args.json:
        print(json.dumps({"cohost": co, "calls": rows, "sealing": sealing, "danmaku": storm}))
    ok = all(r["within_aim"] for r in rows)
    return 0 if ok and (storm is None or storm["meets_aim"]) else 1


if __name__ == "__main__":
    sys.exit(main())
