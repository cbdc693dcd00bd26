"""Run one relay under test for bench/relay.py in its own process (the harness pins it to a
core). Prints `ready HOST PORT` on stdout once listening, then serves until SIGTERM/SIGINT.

    python bench/relay_target.py edge --host 127.0.0.1 --port 0 --cert C --key K \
        --app bench --public-key KEY --region rly
    python bench/relay_target.py fastpath --host 127.0.0.1 --port 0 --to HOST:PORT --key-hex K \
        [--metrics-listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the script's directory holds bench/relay.py, which must not shadow the `relay` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))



def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _ready(host: str, port: int) -> None:
    print(f"ready {host} {port}", flush=True)


async def run_edge(args: argparse.Namespace) -> None:
    from relay.edge import start_edge
    from relay.edgesession import EdgeLimits, parse_limits
    from relay.node import settle_heap
    from skymesh.token import decode_public_key

    app_keys = {args.app: (decode_public_key(args.public_key),)}
    limits = {} if args.max_media_bytes is None else {"max_media_bytes": args.max_media_bytes}
    # one publisher carries the whole offered load here: the per-session media limit (a flood
    # limit, 4 MB/s by default) would cap it at ~3,300 pps of 1200 bytes. Set out of the way,
    # its bucket is still checked per datagram, so its cost stays in the figures.
    limits["limits"] = parse_limits(args.limits or "", EdgeLimits(
        media_bytes_per_s=1e12, media_burst_bytes=1e12))
    server, edge = await start_edge(args.host, args.port, args.cert, args.key, app_keys,
                                    args.region, {"global"}, **limits)
    settle_heap()
    _ready(args.host, edge.port or args.port)
    try:
        await _until_signalled()
    finally:
        server.close()


async def run_fastpath(args: argparse.Namespace) -> None:
    """The relay node's own UDP path (relay/node.py -> relay/fabric.py), configured through
    the same controller messages a live relay gets: peer `rcv` at `--to`, the fabric key, and
    a route table sending zone `global` traffic for `rcv` straight there. No control session
    and no probing run; every datagram the sender sends is channel traffic."""
    from relay.node import RelayNode, settle_heap
    from skymesh.v1 import relay_pb2

    node = RelayNode("rly", "unused:0", (args.host, args.port), tls=None)  # no controller
    host, port = await node.start_udp()
    metrics = ""
    if args.metrics_listen:  # the relay's Prometheus endpoint, as relay/node.py starts it
        from relay.metrics import RelayCollector
        from skymesh.net import metricsserver

        server = await metricsserver.serve(
            args.metrics_listen, metricsserver.registry_with(RelayCollector(node)))
        metrics = f" {metricsserver.bound_address(server)}"
    for msg in (
        relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
            peers=[relay_pb2.Peer(region="rcv", probe_addr=args.to)])),
        relay_pb2.ControllerMessage(config=relay_pb2.RelayConfig(
            fabric_key=bytes.fromhex(args.key_hex), zones=["global"])),
        relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(version=1, routes=[
            relay_pb2.RouteEntry(dst="rcv", next_hop="rcv", path=["rly", "rcv"], cost_ms=1.0,
                                 zone="global")])),
    ):
        node.on_control(msg)
    settle_heap()
    print(f"ready {host} {port}{metrics}", flush=True)
    try:
        await _until_signalled()
    finally:
        node.udp.close()
        c = node.counters
        print(f"forwarded {c['zone.global.forwarded']} dropped "
              f"{sum(v for k, v in c.items() if k.startswith('dropped.'))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="relay", required=True)
    edge = sub.add_parser("edge", help="the skymesh QUIC client edge (relay.edge)")
    edge.add_argument("--host", default="127.0.0.1")
    edge.add_argument("--port", type=int, default=0)
    edge.add_argument("--cert", required=True)
    edge.add_argument("--key", required=True)
    edge.add_argument("--app", default="bench")
    edge.add_argument("--public-key", required=True,
                      help="the app's Ed25519 public key (base64url) its tokens are checked with")
    edge.add_argument("--region", default="rly")
    edge.add_argument("--max-media-bytes", type=int,
                      help="override the edge's media datagram cap (the bench sends 1100 bytes)")
    edge.add_argument("--limits", metavar="NAME=VALUE,...",
                      help="edge limits over the bench's (as the relay's --edge-limits), e.g. "
                      "sessions-per-source=100000 for thousands of sessions from one address")
    fast = sub.add_parser("fastpath", help="the relay-to-relay UDP fast path (relay.node)")
    fast.add_argument("--host", default="127.0.0.1")
    fast.add_argument("--port", type=int, default=0)
    fast.add_argument("--to", required=True, help="HOST:PORT the forwarded copies go to")
    fast.add_argument("--key-hex", required=True)
    fast.add_argument("--metrics-listen", metavar="HOST:PORT",
                      help="serve the relay's Prometheus metrics here (its `ready` line "
                      "then ends with their address)")
    args = parser.parse_args(argv)
    run = run_edge if args.relay == "edge" else run_fastpath
    loop = _loop()
    profile = None
    if os.environ.get("SKYMESH_BENCH_GCLOG"):  # the collector's passes, printed at the end
        import atexit
        import gc
        import time
        passes: dict[int, list[float]] = {0: [], 1: [], 2: []}
        began = [0.0]

        def watch(phase: str, info: dict) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                passes[info["generation"]].append(time.perf_counter() - began[0])
        gc.callbacks.append(watch)
        atexit.register(lambda: print("gc " + " ".join(
            f"gen{g}: {len(v)} passes, max {max(v, default=0) * 1e3:.1f} ms, total "
            f"{sum(v) * 1e3:.0f} ms" for g, v in passes.items()), file=sys.stderr))
    if os.environ.get("SKYMESH_BENCH_PROFILE"):  # a cProfile of the relay under test
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    try:
        loop.run_until_complete(run(args))
    finally:
        loop.close()
        if profile is not None:
            profile.disable()
            profile.dump_stats(os.environ["SKYMESH_BENCH_PROFILE"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
