"""`skymesh call`: a 1:1 call between two regions of the local mesh (or any mesh, with its
tokens), sealed end to end by default (sdk/e2ee.py: the relays forward what they cannot read),
and what it measured: from `call()` to the first frame received on each side, the latency of
each direction, and what sealing costs per frame."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from contextlib import AsyncExitStack

from sdk.e2ee import SFrame
from sdk.errors import SkymeshError
from skymesh.cli import admin, traffic
from skymesh.cli.common import add_log_format, run_loop, setup_logging
from skymesh.cli.drillstats import percentile

FRAME_BYTES = 1000
SEAL_SAMPLES = 2000


def add_parsers(sub) -> None:
    p = sub.add_parser("call", help="a 1:1 call between two regions, sealed end to end, "
                       "with its time to first frame and latency each way",
                       description="Call from one region to another: two sessions join a "
                       "private channel, each sending test frames (and a message a second) "
                       "sealed end to end with a key only they hold, and report the time from "
                       "the call to the first frame received on each side, the latency of "
                       "each direction, the route's one-way cost, and what sealing costs per "
                       "frame.")
    p.add_argument("--from", dest="src", required=True, metavar="REGION", help="the caller's")
    p.add_argument("--to", dest="dst", required=True, metavar="REGION", help="the callee's")
    p.add_argument("--duration", type=float, default=5.0, metavar="S",
                   help="seconds of the call (default: %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, metavar="N",
                   help="frames a second each way (default: %(default)s)")
    p.add_argument("--no-e2ee", action="store_true",
                   help="do not seal end to end (to compare: the relays can read it then)")
    p.add_argument("--controller", metavar="HOST:PORT",
                   help="controller address (default: the local mesh's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    admin.add_client_arguments(p)
    add_log_format(p)
    p.set_defaults(run=cmd_call)


def cmd_call(args: argparse.Namespace) -> int:
    setup_logging("warning", "call", args.log_format)
    if not 0.5 <= args.duration <= 3600 or not 1 <= args.rate <= 1000:
        print("skymesh: --duration 0.5 to 3600 s, --rate 1 to 1000 frames a second",
              file=sys.stderr)
        return 2
    try:
        controller = admin.controller_address(args.controller)
        data = run_loop(run_call(controller, args.src, args.dst, args.duration, args.rate,
                                 not args.no_e2ee))
    except admin.AdminError as e:
        print(f"skymesh: {e}", file=sys.stderr)
        return 2
    except (TimeoutError, SkymeshError, OSError) as e:
        print(f"skymesh: call: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(data) if args.json else render(data))
    return 0


def seal_cost_us(samples: int = SEAL_SAMPLES) -> dict:
    """Sealing and opening one FRAME_BYTES frame, microseconds each (median of the runs)."""
    a = SFrame(secrets.token_bytes(32))
    b = SFrame(a.base_key)
    frame = bytes(FRAME_BYTES)
    seal, open_ = [], []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        sealed = a.seal(frame)
        t1 = time.perf_counter_ns()
        b.open(sealed)
        t2 = time.perf_counter_ns()
        seal.append((t1 - t0) / 1000)
        open_.append((t2 - t1) / 1000)
    return {"seal_us": round(percentile(seal, 50), 1), "open_us": round(percentile(open_, 50), 1),
            "overhead_bytes": len(sealed) - len(frame)}


async def run_call(controller: str, src: str, dst: str, duration: float, rate: float,
                   e2ee: bool) -> dict:
    channel = f"call-{secrets.token_hex(4)}"
    key = secrets.token_bytes(32) if e2ee else None
    edges = {r: await asyncio.to_thread(traffic.resolve_edges, controller, r)
             for r in (src, dst)}
    route = await asyncio.to_thread(admin.path, controller, src, dst)
    async with AsyncExitStack() as stack:
        started = time.monotonic()  # call(): both sides connect and join at once

        async def side(region: str, role: str):
            tok = traffic.local_token("demo", channel, traffic.new_uid(role), "global")
            s, _ = await traffic.connect_edges(stack, edges[region], tok, channel,
                                               e2ee_key=key)
            await asyncio.wait_for(s.join(), 10)
            return s

        caller, callee = await asyncio.gather(side(src, "caller"), side(dst, "callee"))
        until = time.monotonic() + duration
        got = {"caller": traffic.Received(), "callee": traffic.Received()}
        first: dict[str, float | None] = {"caller": None, "callee": None}

        async def listen(s, who: str) -> None:
            async for data in s.media():
                if first[who] is None and traffic.parse_frame(data) is not None:
                    first[who] = time.monotonic() - started
                got[who].on_media(data, time.time_ns())

        listeners = [asyncio.ensure_future(listen(caller, "caller")),
                     asyncio.ensure_future(listen(callee, "callee"))]
        try:
            await asyncio.gather(
                traffic.publish(caller, until, rate, FRAME_BYTES, messages_per_s=1.0),
                traffic.publish(callee, until, rate, FRAME_BYTES, messages_per_s=1.0))
            await asyncio.sleep(0.3)  # the last frames in flight (a bound, not a condition)
        finally:
            for t in listeners:
                t.cancel()
        refused = sum(s.e2ee.refused for s in (caller, callee) if s.e2ee is not None)

    def direction(who: str) -> dict:
        s = got[who].summary()
        return {"first_frame_s": round(first[who], 3) if first[who] is not None else None,
                "frames": s["media_received"], "lost": s["media_lost"],
                "latency_ms": s["latency_ms"]}
    out = {"channel": channel, "from": src, "to": dst, "e2ee": e2ee,
           "route": {"path": route["path"], "one_way_cost_ms": route["cost_ms"]},
           # what the callee received is the caller's direction, and back
           src + "->" + dst: direction("callee"), dst + "->" + src: direction("caller"),
           "frames_refused": refused}
    if e2ee:
        out["sealing"] = seal_cost_us()
    return out


def render(d: dict) -> str:
    lines = [f"call {d['from']} -> {d['to']} on {d['channel']}, "
             + ("sealed end to end (SFrame, AES-128-GCM)" if d["e2ee"] else "NOT sealed"),
             f"route {' -> '.join(d['route']['path'])}, one-way cost "
             f"{d['route']['one_way_cost_ms']:.1f} ms"]
    for key in (f"{d['from']}->{d['to']}", f"{d['to']}->{d['from']}"):
        x = d[key]
        lat = x["latency_ms"]
        lines.append(f"  {key}: first frame {x['first_frame_s']} s after the call, "
                     f"{x['frames']} frames ({x['lost']} lost), latency p50 {lat['p50']} ms "
                     f"p99 {lat['p99']} ms")
    if "sealing" in d:
        s = d["sealing"]
        lines.append(f"  sealing: {s['seal_us']} us to seal and {s['open_us']} us to open a "
                     f"{FRAME_BYTES}-byte frame, {s['overhead_bytes']} bytes more")
    return "\n".join(lines)
