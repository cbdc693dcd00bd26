"""Two relay nodes per region on a live local mesh (`skymesh up --nodes-per-region 2`): real
relay processes, real QUIC sessions.

A region's share of a channel crosses the wide area once and reaches every node there with
subscribers; killing a node keeps its sibling's subscribers receiving (transit into the region
moves to the sibling), and the dead node's clients reconnect to the sibling."""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from contextlib import AsyncExitStack

import pytest
from support import cli_json, run_cli, take, take_within, wait_for, write_matrix, write_regions

from sdk.client import connect
from skymesh.cli import mesh, traffic

REGIONS = {"aa": (50.0, 8.0, "DE"), "bb": (48.0, 2.0, "FR"), "cc": (52.0, 0.0, "GB")}
RTTS = {("aa", "bb"): 30, ("aa", "cc"): 20, ("bb", "cc"): 20}
POLICY = "zones:\n  global: {description: everything, all: true}\n"
DEADLINE = 15.0
FRAME = struct.Struct("!I")  # a frame's index: gaps are counted in frames
FRAME_S = 0.02  # 50 frames a second
# the longest a sibling's subscriber may go without frames when a node dies. The failover aim
# is a gap p99 under 400 ms; this bound only tells "transit moved at once" (tens to hundreds
# of ms) from "waited for something to time out" (seconds) on a busy 2-core machine
GAP_BOUND_S = 2.0


@pytest.fixture(scope="module")
def node_mesh(tmp_path_factory):
    base = tmp_path_factory.mktemp("nodes")
    regions = write_regions(base / "regions", REGIONS)
    matrix = write_matrix(base / "matrix.csv", RTTS)
    (base / "policy.yaml").write_text(POLICY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYMESH_HOME", str(base / "home"))
        # in-process admin calls take this mesh's operator certificate, whatever an earlier
        # test's in-process `up` left
        mp.setattr(traffic.admin._Credentials, "set", False)
        mp.setattr(traffic.admin._Credentials, "options", argparse.Namespace(
            insecure=False, cert=None, ca=None, key=None, certs=None))
        proc = run_cli("up", "--detach", "--json", "--probe-interval", "0.3",
                       "--nodes-per-region", "2", "--regions", str(regions),
                       "--latency-matrix", str(matrix), "--policy", str(base / "policy.yaml"),
                       timeout=180)
        assert proc.returncode == 0, proc.stderr
        try:
            yield base / "home"
        finally:
            run_cli("down", timeout=60)


def region_info(region: str) -> dict:
    return next(r for r in cli_json("admin", "regions") if r["id"] == region)


def node_counters(region: str, node: str) -> dict:
    return next(n for n in region_info(region)["nodes"] if n["node_id"] == node).get(
        "counters", {})


def edges(region: str) -> dict[str, traffic.Edge]:
    """The region's edges by node id."""
    controller = traffic.admin.controller_address(None)
    return {e.node: e for e in traffic.resolve_edges(controller, region)}


async def session(stack: AsyncExitStack, edge: traffic.Edge, channel: str, uid: str):
    tok = traffic.local_token("demo", channel, uid, "global")
    s = await stack.enter_async_context(connect(edge.host, edge.port, tok, channel, edge.ca))
    await asyncio.wait_for(s.join(), DEADLINE)
    return s


async def members_known(channel: str, destinations: set[str]) -> None:
    """Wait until the controller lists exactly `destinations` (relay nodes, "region/node")
    as the channel's members."""
    while True:
        chans = await asyncio.to_thread(traffic.admin.channels,
                                        traffic.admin.controller_address(None))
        subs = next((c["subscriber_nodes"] for c in chans
                     if c["channel"] == f"demo/{channel}"), [])
        if set(subs) == destinations:
            return
        await asyncio.sleep(0.05)


def test_the_mesh_lists_two_nodes_per_region_the_lead_first(node_mesh):
    for region in REGIONS:
        info = region_info(region)
        assert [n["node_id"] for n in info["nodes"]] in (["n1", "n2"], ["n2", "n1"])
        assert info["nodes"][0]["lead"] and not info["nodes"][1]["lead"]
        assert all(n["edge_addr"] and n["probe_addr"] for n in info["nodes"])


def test_subscribers_on_every_node_get_every_frame_and_message_once(node_mesh):
    """A publisher on aa/n1; subscribers on both nodes of bb and on aa/n2, its sibling."""
    async def main():
        async with AsyncExitStack() as stack:
            aa, bb = edges("aa"), edges("bb")
            pub = await session(stack, aa["n1"], "both", "pub")
            subs = {"bb/n1": await session(stack, bb["n1"], "both", "s1"),
                    "bb/n2": await session(stack, bb["n2"], "both", "s2"),
                    "aa/n2": await session(stack, aa["n2"], "both", "s3")}
            # every session joined receives: the publisher's node is a member too
            await asyncio.wait_for(members_known("both", {"aa/n1", *subs}), DEADLINE)
            frames = [b"frame-%d" % i for i in range(40)]
            for i, f in enumerate(frames):
                pub.publish_media(f)
                await pub.send_message(f"m{i}")
                await asyncio.sleep(0.005)
            for where, s in subs.items():
                got = await asyncio.wait_for(take(s.messages(), 40), DEADLINE)
                assert [(m.id, m.body) for m in got] == [(i + 1, f"m{i}") for i in range(40)], \
                    where
                media = await take_within(s.media(), len(frames), 5.0)
                assert media == [f for f in frames if f in media], where  # in order, once
                assert len(media) >= len(frames) - 3, (where, len(media))
            await pub.send_message("marker")  # once: nothing more came before it
            for s in subs.values():
                [m] = await asyncio.wait_for(take(s.messages(), 1), DEADLINE)
                assert m.body == "marker"

    asyncio.run(main())
    # bb's share crossed the wide area once: the bb node that took it in handed its sibling
    # the other node's part (and aa/n1 handed aa/n2 its own)
    handed = wait_for(lambda: sum(node_counters("bb", n).get("sibling.sent", 0)
                                  for n in ("n1", "n2")) >= 40 or None, DEADLINE,
                      "a bb node to report what it handed its sibling")
    assert handed
    assert node_counters("aa", "n1").get("sibling.sent", 0) >= 40


def test_killing_a_node_keeps_its_siblings_subscribers_receiving(node_mesh):
    """Kill the bb node that takes aa's transit into bb: the other node's subscriber keeps
    receiving (transit moves to it), every message arrives once, and the dead node's
    subscriber reconnects to the sibling."""
    state = mesh.running_state()
    assert state is not None

    async def main() -> tuple[float, str]:
        async with AsyncExitStack() as stack:
            aa, bb = edges("aa"), edges("bb")
            pub = await session(stack, aa["n1"], "kill", "pub")
            s1 = await session(stack, bb["n1"], "kill", "s1")
            s2 = await session(stack, bb["n2"], "kill", "s2")
            await asyncio.wait_for(members_known("kill", {"aa/n1", "bb/n1", "bb/n2"}), DEADLINE)
            # which bb node takes aa's copies in: the one that hands its sibling theirs
            for i in range(20):
                pub.publish_media(FRAME.pack(100000 + i))
            await asyncio.wait_for(take(s1.media(), 20), DEADLINE)
            await asyncio.wait_for(take(s2.media(), 20), DEADLINE)
            entry = await asyncio.to_thread(
                wait_for, lambda: next((n for n in ("n1", "n2")
                                        if node_counters("bb", n).get("sibling.sent", 0)),
                                       None), DEADLINE, "bb's entry node to report")
            survivor = s1 if entry == "n2" else s2
            other = "n1" if entry == "n2" else "n2"
            arrivals: list[tuple[float, int]] = []

            async def watch() -> None:
                async for data in survivor.media():
                    arrivals.append((time.monotonic(), FRAME.unpack(data[:4])[0]))

            watcher = asyncio.create_task(watch())
            sent_messages = 0
            start = time.monotonic()
            killed_at = 0.0
            for i in range(200):  # 4 s at 50 frames a second
                pub.publish_media(FRAME.pack(i))
                if i % 10 == 0:
                    await pub.send_message(f"k{sent_messages}")
                    sent_messages += 1
                if i == 50:  # the frames go on while the node dies
                    killed_at = time.monotonic()
                    killing = asyncio.create_task(
                        asyncio.to_thread(mesh.kill, state, f"bb/{entry}"))
                await asyncio.sleep(max(0.0, start + (i + 1) * FRAME_S - time.monotonic()))
            assert await killing
            got = await asyncio.wait_for(take(survivor.messages(), sent_messages), DEADLINE)
            assert [m.body for m in got] == [f"k{i}" for i in range(sent_messages)]
            await asyncio.sleep(0.5)  # the last frames' way through
            watcher.cancel()
            # the dead node's subscriber reconnects: the controller lists the sibling only
            await asyncio.to_thread(wait_for, lambda: list(edges("bb")) == [other], DEADLINE,
                                    "the controller to list bb's survivor alone")
            tok = traffic.local_token("demo", "kill", "s-again", "global")
            again, at = await traffic.connect_edges(stack, list(edges("bb").values()), tok,
                                                    "kill")
            await asyncio.wait_for(again.join(), DEADLINE)
            assert at.node != entry
            await asyncio.wait_for(members_known("kill", {"aa/n1", f"bb/{other}"}), DEADLINE)
            await pub.send_message("after")
            [m] = await asyncio.wait_for(take(again.messages(), 1), DEADLINE)
            assert m.body == "after"
        after = [(t, i) for t, i in arrivals if i < 100000 and t >= killed_at]
        assert after, "nothing arrived at the sibling after the kill"
        # the longest silence at the survivor from the kill on, between frames sent in time
        times = [killed_at] + [t for t, _ in after]
        return max(b - a for a, b in zip(times, times[1:], strict=False)), entry

    gap, entry = asyncio.run(main())
    print(f"killed bb/{entry}: the sibling's subscriber went {gap * 1000:.0f} ms without frames")
    assert gap < GAP_BOUND_S
    info = region_info("bb")
    assert [n["node_id"] for n in info["nodes"]] == ["n1" if entry == "n2" else "n2"]
    assert info["nodes"][0]["lead"]
