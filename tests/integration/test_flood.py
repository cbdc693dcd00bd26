"""Floods on a live local mesh (real relay processes, real QUIC, mutual TLS): a relay sending
link reports far above its rate, a client opening QUIC sessions and joining in a loop, and a
publisher sending messages far above its rate, all at once. Everyone else keeps being served:
the end-to-end latency of another publisher's messages and the controller's push latency are
measured in a quiet window and in the flood window of the same run, and printed
(`pytest -s`) for the record.

aa -> bb goes through cc (the direct link is slow): draining and undraining cc moves that route
and back, which is what the push latency is measured on. The measured messages go aa -> dd over
their own direct link, which the drains do not touch. ee's relay is stopped, and the reports
flood speaks as ee with a certificate of its own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from support import ROOT, cli_json, run_cli, wait_for, write_matrix, write_regions

from sdk.client import connect
from skymesh import certs, identity
from skymesh.cli import admin, mesh, traffic
from skymesh.cli.drillstats import percentile

REGIONS = {"aa": (50.0, 8.0, "DE"), "bb": (48.0, 2.0, "FR"), "cc": (52.0, 0.0, "GB"),
           "dd": (45.0, 9.0, "IT"), "ee": (40.0, -3.0, "ES")}
RTTS = {("aa", "bb"): 100, ("aa", "cc"): 10, ("cc", "bb"): 10, ("aa", "dd"): 10,
        ("bb", "dd"): 50, ("cc", "dd"): 50, ("aa", "ee"): 50, ("bb", "ee"): 50,
        ("cc", "ee"): 50, ("dd", "ee"): 50}
MOVED = ("aa", "bb")  # the relays whose tables change when cc is drained and undrained
WINDOW_S = 6.0
RATE = 40  # measured messages a second
REPORTS_PER_S = 2000  # 40x a relay's limit (50 a second)
SPAM_PER_S = 2000  # 40x a publisher's limit (50 a second)
# one Python client completes a handful of QUIC handshakes a second, and under load (make
# test runs other tests beside this one) two or three: the joins a client address may make
# are lowered well below that so that its loop goes past them (the two measured sessions
# join before the floods, within the burst)
EDGE_LIMITS = "joins-per-source-per-s=0.5,joins-per-source-burst=4"


@pytest.fixture(scope="module")
def flood_mesh(tmp_path_factory):
    base = tmp_path_factory.mktemp("flood")
    regions = write_regions(base / "regions", REGIONS)
    matrix = write_matrix(base / "matrix.csv", RTTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYMESH_HOME", str(base / "home"))
        proc = run_cli("up", "--detach", "--json", "--probe-interval", "0.3", "--regions",
                       str(regions), "--latency-matrix", str(matrix), "--edge-limits",
                       EDGE_LIMITS, timeout=120)
        assert proc.returncode == 0, proc.stderr
        try:
            state = mesh.read_state()
            assert mesh.kill(state, "ee")
            wait_for(lambda: not next(r for r in cli_json("admin", "regions")
                                      if r["id"] == "ee")["connected"], 20, "ee to go")
            yield base / "home"
        finally:
            run_cli("down", timeout=60)


async def message_latencies(seconds: float, ready=None) -> tuple[int, list[float]]:
    """Messages aa -> dd at RATE a second for `seconds`: (sent, latencies in ms). `ready`
    (if given) is called once both sessions joined, and given a second before they send."""
    address = admin.controller_address(None)
    ea = await asyncio.to_thread(traffic.resolve_edge, address, "aa")
    ed = await asyncio.to_thread(traffic.resolve_edge, address, "dd")
    async with AsyncExitStack() as stack:
        tok = traffic.local_token("demo", "probe", "measured", "global")
        pub = await stack.enter_async_context(connect(ea.host, ea.port, tok, "probe", ea.ca))
        await asyncio.wait_for(pub.join(), 10)
        tok = traffic.local_token("demo", "probe", "listener", "global")
        sub = await stack.enter_async_context(connect(ed.host, ed.port, tok, "probe", ed.ca))
        await asyncio.wait_for(sub.join(), 10)
        await members_known(address)
        if ready is not None:
            await asyncio.to_thread(ready)
            await asyncio.sleep(1.0)  # the floods get going
        latencies: list[float] = []
        sent = int(seconds * RATE)

        async def receive() -> None:
            async for m in sub.messages():
                if m.sender == "measured":
                    latencies.append((time.time_ns() - int(m.body)) / 1e6)
                    if len(latencies) == sent:
                        return

        receiver = asyncio.create_task(receive())
        start = time.monotonic()
        for i in range(sent):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            await pub.send_message(str(time.time_ns()))
        try:
            await asyncio.wait_for(receiver, 15)
        except TimeoutError:
            receiver.cancel()
        return sent, latencies


async def members_known(address: str) -> None:
    async def known() -> bool:
        chans = await asyncio.to_thread(admin.channels, address)
        return any(c["channel"] == "demo/probe" and "dd" in c["subscriber_regions"]
                   for c in chans)
    deadline = time.monotonic() + 15
    while not await known():
        assert time.monotonic() < deadline, "dd never became a member of demo/probe"
        await asyncio.sleep(0.05)


def push_latencies(seconds: float) -> list[float]:
    """Drain and undrain cc for `seconds`: ms from each change until the relays whose routes
    it moves acked the route version it made."""
    address = admin.controller_address(None)
    out = []
    stop = time.monotonic() + seconds
    drained = False
    while time.monotonic() < stop:
        drained = not drained
        t0 = time.monotonic()
        version = admin.drain(address, "cc", drained)["version"]
        while True:
            acked = {r["id"]: r["route_version"] for r in admin.regions(address)}
            if all(acked[r] >= version for r in MOVED):
                break
            if time.monotonic() - t0 > 10:
                pytest.fail(f"routes v{version} not acked in 10 s: {acked}")
            time.sleep(0.01)
        out.append((time.monotonic() - t0) * 1000)
    if drained:
        admin.drain(address, "cc", False)
    return out


async def window(seconds: float, ready=None) -> tuple[int, list[float], list[float]]:
    """The measured sessions join (then `ready` is called), then messages flow for `seconds`
    while cc is drained and undrained."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def go() -> None:
        if ready is not None:
            ready()
        loop.call_soon_threadsafe(started.set)

    measured = asyncio.create_task(message_latencies(seconds, go))
    await started.wait()
    await asyncio.sleep(1.0 if ready is not None else 0.0)
    push = await asyncio.to_thread(push_latencies, seconds)
    sent, latencies = await measured
    return sent, latencies, push


def start_floods(home: Path, seconds: float) -> list[subprocess.Popen]:
    address = admin.controller_address(None)
    d = home / "certs"
    who = identity.relay(certs.mesh_of(certs.load_cert(d / certs.CA_CERT)), "ee", "flood")
    cert, key = certs.issue_identity(d, d, who)
    ea = traffic.resolve_edge(address, "aa")
    script = str(ROOT / "tests" / "flood.py")
    runs = [
        ["reports", address, str(d / certs.BUNDLE), str(cert), str(key), "ee", "flood",
         str(seconds), str(REPORTS_PER_S)],
        ["joins", ea.host, str(ea.port), str(ea.ca),
         traffic.local_token("demo", "lobby", "joiner", "global"), "lobby", str(seconds)],
        ["messages", ea.host, str(ea.port), str(ea.ca),
         traffic.local_token("demo", "probe", "spammer", "global"), "probe", str(seconds),
         str(SPAM_PER_S)],
    ]
    return [subprocess.Popen([sys.executable, script, *r], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT) for r in runs]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return (f"{name}: n={len(values)} p50={percentile(values, 50):.1f} "
            f"p99={percentile(values, 99):.1f} max={max(values):.1f} ms")


def test_floods_are_refused_and_everyone_else_keeps_being_served(flood_mesh):
    quiet_sent, quiet, quiet_push = asyncio.run(window(WINDOW_S))
    floods: list[subprocess.Popen] = []
    flood_sent, flooded, flood_push = asyncio.run(window(
        WINDOW_S, lambda: floods.extend(start_floods(flood_mesh, WINDOW_S + 4))))
    results = [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1])
               for p in floods]
    reports, joins, spam = results
    status = cli_json("admin", "status")
    edge = next(r for r in cli_json("admin", "regions") if r["id"] == "aa")["counters"]
    print(f"\nfloods: reports {reports}, joins {joins}, messages {spam}")
    print(f"controller refused: {status['refused']}; edge aa: refused_rate "
          f"{edge.get('edge.refused_rate')}, refused_sessions "
          f"{edge.get('edge.refused_sessions')}")
    for name, quiet_v, flood_v in (("message latency aa->dd", quiet, flooded),
                                   ("controller push latency", quiet_push, flood_push)):
        print(f"{summary(name + ' quiet', quiet_v)}\n{summary(name + ' flood', flood_v)}")

    # everyone else was served: every measured message arrived, in both windows
    assert len(quiet) == quiet_sent and len(flooded) == flood_sent
    assert quiet_push and flood_push
    # the floods were refused, and counted where they hit
    assert status["refused"]["relay-rate"] > 0
    assert spam.get("RateLimited", 0) > 0 and edge["edge.refused_rate"] > 0
    assert joins.get("joined", 0) > 0 and joins.get("RateLimited", 0) > 0
    # and it stayed usable: generous bounds for two shared cores
    assert percentile(flooded, 99) < 1000, summary("flood", flooded)
    assert percentile(flood_push, 99) < 3000, summary("push", flood_push)
