"""`skymesh pub`, `skymesh sub` and `skymesh demo`: channel traffic from the command line,
through the SDK, against a running mesh (the local one by default). Their clients find their
edges as any client does: through the edge resolvers (`--client-ip` places them anywhere the
resolver's GeoIP database knows, `--region` keeps them to one region), never the admin API;
and they move to another edge by themselves when theirs is lost."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack

from sdk.client import MAX_MEDIA_PAYLOAD
from sdk.errors import SkymeshError
from skymesh.cli import admin, render, traffic
from skymesh.cli.common import add_log_format, run_loop, setup_logging
from skymesh.edgeproto import MAX_HISTORY_PAGE

DEMO_FROM = ("london", "frankfurt", "amsterdam")
DEMO_TO = ("tokyo", "new-york", "sao-paulo", "sydney", "johannesburg", "singapore")


def add_parsers(sub) -> None:
    pub = sub.add_parser("pub", help="publish test media and messages to a channel",
                         description="Join a channel at the edge the resolvers offer and "
                         "publish test frames (carrying their send time) and numbered "
                         "messages.")
    pub.add_argument("--rate", type=float, default=50.0, help="frames per second "
                     "(default: %(default)s)")
    pub.add_argument("--size", type=int, default=1000, help="frame bytes (default: "
                     f"%(default)s, at most {MAX_MEDIA_PAYLOAD})")
    pub.add_argument("--messages-per-s", type=float, default=1.0, metavar="N",
                     help="messages per second (default: %(default)s; 0: none)")
    pub.set_defaults(run=cmd_pub)
    sb = sub.add_parser("sub", help="subscribe to a channel: end-to-end latency, loss, order",
                        description="Join a channel at the edge the resolvers offer and "
                        "report, each second, the media received with its end-to-end latency "
                        "(from the frames' send times) and the messages, checked for order "
                        "and duplicates; and any move to another edge, with its gap.")
    sb.add_argument("--history", type=int, default=0, metavar="N",
                    help="first the channel's last N messages kept at the edge (chat history, "
                    "up to 100; default: none)")
    sb.set_defaults(run=cmd_sub)
    for p in (pub, sb):
        p.add_argument("channel")
        p.add_argument("--region", default="", help="only this region's edges (default: "
                       "the best the resolvers offer)")
        p.add_argument("--duration", type=float, default=10.0, metavar="S",
                       help="seconds (default: %(default)s)")
        _session_options(p)

    demo = sub.add_parser("demo", help="a stream from one region received in several others, "
                          "with its end-to-end latency",
                          description="Publish a test stream in one region and receive it in "
                          "several others, then print per region the path, the route's one-way "
                          "cost and the measured end-to-end latency.")
    demo.add_argument("--from", dest="src", metavar="REGION",
                      help=f"publishing region (default: the first of {', '.join(DEMO_FROM)} "
                      "that runs)")
    demo.add_argument("--to", metavar="R,...", help="receiving regions (default: up to four "
                      f"of {', '.join(DEMO_TO)})")
    demo.add_argument("--duration", type=float, default=8.0, metavar="S",
                      help="seconds (default: %(default)s)")
    demo.add_argument("--channel", default=None, help="channel (default: a fresh one)")
    _session_options(demo)
    demo.set_defaults(run=cmd_demo)


def parser_defaults(command: str) -> argparse.Namespace:
    """The arguments `command` gets when given none."""
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    return p.parse_args([command])


def _session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zone", default="global", help="residency zone (default: %(default)s)")
    p.add_argument("--app", default="demo", help="app id (default: %(default)s)")
    p.add_argument("--uid", help="user id (default: a random one)")
    p.add_argument("--token", help="access token (default: one signed with the local mesh's "
                   "private key for --app)")
    traffic.add_resolving_arguments(p)
    p.add_argument("--controller", metavar="HOST:PORT",
                   help="controller address, for what the demo shows of routes (default: "
                   "the local mesh's)")
    admin.add_client_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_log_format(p)


def _fail(message: str) -> int:
    print(f"skymesh: {message}", file=sys.stderr)
    return 2


def _say(args: argparse.Namespace):
    return (lambda line: print(line, file=sys.stderr)) if args.json else print


def _token(args: argparse.Namespace, channel: str, uid: str) -> str:
    return args.token or traffic.local_token(args.app, channel, uid, args.zone)


def _endpoint(args: argparse.Namespace, role: str) -> tuple[traffic.Resolving, str, str]:
    """How the edges are found, the user id and the token of a pub or sub command."""
    how = traffic.resolving(args.resolver, args.resolver_ca, args.edge_ca, args.edge_name)
    uid = args.uid or traffic.new_uid(role)
    return how, uid, _token(args, args.channel, uid)


def _where(s) -> str:
    edge = s.edge
    raced = ", ".join(f"{c.region} {ms:.1f} ms" for c, ms in s.raced)
    return f"{edge.region} ({edge.address})" + (f"; handshakes {raced}" if raced else "")


def _moves(s, say, seen: int) -> int:
    for m in s.migrations[seen:]:
        gap = "" if m.media_gap_s is None else f", media gap {m.media_gap_s:.2f} s"
        say(f"moved from {m.from_edge} to {m.to_edge} in {m.took_s:.2f} s ({m.reason}){gap}")
    return len(s.migrations)


def cmd_pub(args: argparse.Namespace) -> int:
    setup_logging("warning", "pub", args.log_format)
    if not 0 < args.size <= MAX_MEDIA_PAYLOAD:
        return _fail(f"--size must be 1..{MAX_MEDIA_PAYLOAD}")
    if args.rate <= 0:
        return _fail("--rate must be positive")
    say = _say(args)
    try:
        how, uid, tok = _endpoint(args, "pub")
    except admin.AdminError as e:
        return _fail(str(e))

    async def run() -> dict:
        async with AsyncExitStack() as stack:
            s = await traffic.resolved_session(stack, how, tok, args.channel,
                                               region=args.region, address=args.client_ip)
            joined = await asyncio.wait_for(s.join(), 10)
            say(f"publishing to {args.channel} as {uid} at {_where(s)}, zone "
                f"{joined['zone']}")
            moves = [0]

            def progress(p: dict) -> None:
                say(f"t={p['t_s']}s sent {p['media_sent']} frames, {p['messages_sent']} "
                    "messages")
                moves[0] = _moves(s, say, moves[0])

            result = await traffic.publish(
                s, time.monotonic() + args.duration, args.rate, args.size, args.messages_per_s,
                progress=progress)
            return {"region": s.edge.region, "edge": s.edge.address, "channel": args.channel,
                    "uid": uid, **result, "moves": traffic.describe_moves(s)}

    return _finish(args, run)


def cmd_sub(args: argparse.Namespace) -> int:
    setup_logging("warning", "sub", args.log_format)
    say = _say(args)
    if not 0 <= args.history <= MAX_HISTORY_PAGE:
        return _fail(f"--history: 0 to {MAX_HISTORY_PAGE} messages")
    try:
        how, uid, tok = _endpoint(args, "sub")
    except admin.AdminError as e:
        return _fail(str(e))

    async def run() -> dict:
        got = traffic.Received()
        async with AsyncExitStack() as stack:
            s = await traffic.resolved_session(stack, how, tok, args.channel,
                                               region=args.region, address=args.client_ip)
            await asyncio.wait_for(s.join(history=args.history), 10)
            say(f"subscribed to {args.channel} as {uid} at {_where(s)}")
            for m in s.recent.messages:
                say(f"  [history #{m.n}] {m.uid}: {m.body}")
            end = time.monotonic() + args.duration
            moves = 0
            while (now := time.monotonic()) < end:
                before = len(got.latencies_ms)
                await traffic.receive(s, got, min(end, now + 1.0))
                window = got.latencies_ms[before:]
                p50, p99 = traffic.percentile(window, 50), traffic.percentile(window, 99)
                say(f"media {len(window)}/s" + (f", latency p50 {p50:.1f} ms p99 {p99:.1f} ms"
                                                 if window else "")
                    + f", messages {got.messages}")
                moves = _moves(s, say, moves)
            return {"region": s.edge.region, "edge": s.edge.address, "channel": args.channel,
                    "uid": uid, **got.summary(), "messages_lost": s.messages_lost,
                    "moves": traffic.describe_moves(s),
                    **({"history": [{"n": m.n, "from": m.uid, "id": m.mid, "body": m.body,
                                     "at": m.at} for m in s.recent.messages],
                        "history_more": s.recent.more} if args.history else {})}

    return _finish(args, run)


def _finish(args: argparse.Namespace, run) -> int:
    result: list[dict] = []

    async def main() -> None:
        result.append(await run())

    try:
        run_loop(main())
    except (TimeoutError, SkymeshError, OSError) as e:
        return _fail(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    data = result[0]
    print(json.dumps(data) if args.json else
          "\n".join(f"{k:22} {v}" for k, v in data.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging("warning", "demo", args.log_format)
    say = _say(args)
    try:
        controller = admin.controller_address(args.controller)
        data = run_demo(controller, args, say)
    except admin.AdminError as e:
        return _fail(str(e))
    except (TimeoutError, SkymeshError, OSError) as e:
        return _fail(f"demo stream: {type(e).__name__}: {e}")
    if args.json:
        print(json.dumps(data))
    else:
        print(render_demo(data))
    return 0


def pick_regions(controller: str, src: str | None, to: str | None) -> tuple[str, list[str]]:
    with_edge = [r["id"] for r in admin.regions(controller) if r["edge_addr"]]
    if len(with_edge) < 2:
        raise admin.AdminError("the demo needs two regions with a client edge")
    src = src or next((r for r in DEMO_FROM if r in with_edge), with_edge[0])
    if to:
        dests = [x.strip() for x in to.split(",") if x.strip()]
    else:
        dests = [r for r in DEMO_TO if r in with_edge and r != src][:4]
        dests = dests or [r for r in with_edge if r != src][:4]
    return src, dests


def run_demo(controller: str, args: argparse.Namespace, say=print) -> dict:
    src, dests = pick_regions(controller, args.src, args.to)
    channel = args.channel or f"demo-{traffic.new_uid('ch')}"
    how = traffic.resolving(args.resolver, args.resolver_ca, args.edge_ca, args.edge_name)
    tokens = {r: args.token or traffic.local_token(args.app, channel, f"{r}-user", args.zone)
              for r in [src, *dests]}
    paths = {r: admin.path(controller, src, r, args.zone) for r in dests}
    results: dict = {}

    async def main() -> None:
        async with AsyncExitStack() as stack:
            sessions = {}
            for r in [src, *dests]:  # each a client in its region, as the resolver places it
                sessions[r] = await traffic.resolved_session(stack, how, tokens[r], channel,
                                                             region=r)
                await asyncio.wait_for(sessions[r].join(), 10)
            await _members_known(controller, args.zone, f"{args.app}/{channel}", dests)
            say(f"streaming {args.duration:.0f} s from {src} to {', '.join(dests)} on channel "
                f"{channel} (50 frames/s of 1000 bytes, 2 messages/s)")
            until = time.monotonic() + args.duration
            got = {r: traffic.Received() for r in dests}
            # subscribers drain a little past the end, for what is still in flight
            receivers = [traffic.receive(sessions[r], got[r], until + 1.0) for r in dests]
            sent, *_ = await asyncio.gather(
                traffic.publish(sessions[src], until, 50.0, 1000, 2.0), *receivers)
            results.update(sent=sent, got=got)

    run_loop(main())
    rows = []
    for r in dests:
        p = paths[r]
        rows.append({"region": r, "path": p["path"], "route_cost_ms": p["cost_ms"],
                     **results["got"][r].summary()})
    return {"from": src, "channel": channel, "zone": args.zone, **results["sent"],
            "receivers": rows}


async def _members_known(controller: str, zone: str, channel: str, regions: list[str],
                         timeout: float = 10.0) -> None:
    """Wait until the controller lists every receiving region as a subscriber."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chans = await loop.run_in_executor(None, admin.channels, controller)
        subs = next((c["subscriber_regions"] for c in chans
                     if (c["zone"], c["channel"]) == (zone, channel)), [])
        if set(regions) <= set(subs):
            await asyncio.sleep(0.2)  # the controller's push reaches the publisher's relay
            return
        await asyncio.sleep(0.1)
    raise admin.AdminError(f"the controller did not list {', '.join(regions)} as subscribers "
                           f"of {channel} within {timeout:.0f} s")


def render_demo(data: dict) -> str:
    head = (f"stream from {data['from']} (channel {data['channel']}, zone {data['zone']}): "
            f"{data['media_sent']} frames, {data['messages_sent']} messages sent")
    rows = [[r["region"], " > ".join(r["path"]), f"{r['route_cost_ms']:.1f}",
             _ms(r["latency_ms"]["p50"]), _ms(r["latency_ms"]["p99"]),
             f"{r['media_received']}/{data['media_sent']}",
             f"{r['messages_received']}/{data['messages_sent']}"]
            for r in data["receivers"]]
    return head + "\n" + render.table(
        ["TO", "PATH", "ROUTE_MS", "P50_MS", "P99_MS", "FRAMES", "MESSAGES"], rows) + (
        "\nROUTE_MS is the route's one-way cost; P50/P99 the measured end-to-end latency of "
        "the frames\n(publisher to subscriber, through the edges and relays).")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
