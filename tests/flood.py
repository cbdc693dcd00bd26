"""Flood generators for tests/integration/test_flood.py, run as their own processes so that a
flood does not share the measuring client's interpreter. Each runs for a fixed time and prints
one JSON line of what it sent and how it was refused.

    flood.py reports CONTROLLER CA CERT KEY REGION NODE SECONDS RATE
        a relay (its certificate names REGION and NODE) sending RATE link reports a second
    flood.py joins HOST PORT EDGE_CA TOKEN CHANNEL SECONDS
        a client opening QUIC sessions and joining in a loop, as fast as it can
    flood.py messages HOST PORT EDGE_CA TOKEN CHANNEL SECONDS RATE
        a publisher sending RATE messages a second, reconnecting when refused

The rates are far above the limits (tens of times) but bounded: on a machine of two cores an
unbounded loop measures how the host shares its CPU, not how the mesh sheds a flood.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from sdk.client import connect  # noqa: E402
from sdk.errors import SkymeshError  # noqa: E402
from skymesh.net.tls import TlsFiles, channel_credentials  # noqa: E402
from skymesh.v1 import relay_pb2, relay_pb2_grpc  # noqa: E402


def reports(controller: str, ca: str, cert: str, key: str, region: str, node: str,
            seconds: float, rate: float) -> dict:
    creds = channel_credentials(TlsFiles(Path(ca), Path(cert), Path(key)))
    sent = 0
    stop = time.monotonic() + seconds
    # counters only: the flood is of messages, not of false links (which any relay could claim
    # for its own region, rate limit or not)
    report = relay_pb2.RelayMessage(report=relay_pb2.LinkReport(counters={"flood": 1}))

    def messages():
        nonlocal sent
        yield relay_pb2.RelayMessage(hello=relay_pb2.Hello(region=region, node_id=node,
                                                           probe_addr="127.0.0.1:9"))
        start = time.monotonic()
        while (now := time.monotonic()) < stop:
            ahead = start + sent / rate - now
            if ahead > 0:
                time.sleep(ahead)
            sent += 1
            yield report

    outcome = "ended"
    with grpc.secure_channel(controller, creds) as channel:
        call = relay_pb2_grpc.RelayControlStub(channel).Session(messages(),
                                                                timeout=seconds + 10)
        try:
            for _ in call:
                if time.monotonic() >= stop:
                    break
        except grpc.RpcError as e:
            outcome = e.code().name
        call.cancel()
    return {"sent": sent, "outcome": outcome}


async def joins(host: str, port: int, ca: str, token: str, channel: str,
                seconds: float) -> dict:
    outcomes: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            async with connect(host, port, token, channel, ca) as s:
                await asyncio.wait_for(s.join(), 5)
                outcomes["joined"] += 1
        except (SkymeshError, TimeoutError) as e:
            outcomes[type(e).__name__] += 1
    return dict(outcomes)


async def messages(host: str, port: int, ca: str, token: str, channel: str,
                   seconds: float, rate: float) -> dict:
    outcomes: Counter[str] = Counter()
    start = time.monotonic()
    stop = start + seconds
    while time.monotonic() < stop:
        try:
            async with connect(host, port, token, channel, ca) as s:
                await asyncio.wait_for(s.join(), 5)
                while time.monotonic() < stop:
                    await s.send_message("spam " * 20)
                    outcomes["sent"] += 1
                    await asyncio.sleep(max(0.0, start + outcomes["sent"] / rate
                                            - time.monotonic()))
        except (SkymeshError, TimeoutError) as e:
            outcomes[type(e).__name__] += 1
            await asyncio.sleep(0.05)
    return dict(outcomes)


def main(argv: list[str]) -> None:
    kind, args = argv[0], argv[1:]
    if kind == "reports":
        out = reports(*args[:6], float(args[6]), float(args[7]))
    elif kind == "joins":
        host, port, ca, token, channel, seconds = args
        out = asyncio.run(joins(host, int(port), ca, token, channel, float(seconds)))
    elif kind == "messages":
        host, port, ca, token, channel, seconds, rate = args
        out = asyncio.run(messages(host, int(port), ca, token, channel, float(seconds),
                                   float(rate)))
    else:
        raise SystemExit(f"unknown flood {kind!r}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
