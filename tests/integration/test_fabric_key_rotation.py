"""Rotating the fabric key under traffic on a live local mesh: an operator's
`skymesh admin rotate-fabric-key` while a publisher sends reliable messages and media to
subscribers in other regions. The new key is accepted everywhere before it seals, and the old
one accepted until well after: every message arrives once and in order, and no media is lost
to a key (no datagram dropped as bad-tag, of an unknown epoch, or as a replay)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack

from support import cli_json, run_cli, take, take_within, wait_for, write_matrix, write_regions

from sdk.client import connect
from skymesh.cli import traffic

REGIONS = {"aa": (50.0, 8.0, "DE"), "bb": (48.0, 2.0, "FR"), "cc": (52.0, 0.0, "GB")}
RTTS = {("aa", "bb"): 30, ("aa", "cc"): 20, ("bb", "cc"): 20}
DEADLINE = 20.0
OVERLAP_S = 5.0  # the controller's default --fabric-key-overlap
SEND_S = 3 * OVERLAP_S  # before, across and after the three phases
FPS, MESSAGES_PER_S = 50, 10
# channel datagrams' and probes' (a rotation must not make a link look down)
KEY_DROPS = ("dropped.bad-tag", "dropped.epoch", "dropped.replay", "dropped.no-key",
             "probe.bad-tag", "probe.epoch")


def counters() -> dict[str, dict]:
    return {r["id"]: r["counters"] for r in cli_json("admin", "regions")}


async def session(stack: AsyncExitStack, region: str, channel: str, uid: str):
    e = traffic.resolve_edge(traffic.admin.controller_address(None), region)
    tok = traffic.local_token("demo", channel, uid, "global")
    s = await stack.enter_async_context(connect(e.host, e.port, tok, channel, e.ca))
    await asyncio.wait_for(s.join(), DEADLINE)
    return s


async def members_known(channel: str, regions: set[str]) -> None:
    while True:
        chans = await asyncio.to_thread(traffic.admin.channels,
                                        traffic.admin.controller_address(None))
        subs = next((c["subscriber_regions"] for c in chans
                     if c["channel"] == f"demo/{channel}"), [])
        if regions <= set(subs):
            return
        await asyncio.sleep(0.05)


def test_rotating_the_fabric_key_under_traffic_loses_nothing(home, tmp_path, start_mesh):
    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    start_mesh("--regions", str(regions), "--latency-matrix", str(matrix))
    before = counters()
    rotated: dict = {}

    def rotate() -> None:
        proc = run_cli("admin", "rotate-fabric-key", "--json", timeout=30)
        assert proc.returncode == 0, proc.stderr
        rotated.update(json.loads(proc.stdout))

    async def main():
        async with AsyncExitStack() as stack:
            pub = await session(stack, "aa", "rotate", "pub")
            subs = {r: await session(stack, r, "rotate", f"sub-{r}") for r in ("bb", "cc")}
            await asyncio.wait_for(members_known("rotate", {"bb", "cc"}), DEADLINE)
            received: dict[str, list[bytes]] = {r: [] for r in subs}

            async def collect(region: str) -> None:  # as it comes: the SDK keeps the latest
                async for frame in subs[region].media():
                    received[region].append(frame)

            collectors = [asyncio.create_task(collect(r)) for r in subs]
            frames, messages = [], []
            rotation = None
            start = time.monotonic()
            i = 0
            while (elapsed := time.monotonic() - start) < SEND_S:
                if rotation is None and elapsed >= 1.0:  # traffic flows, then the operator
                    rotation = asyncio.create_task(asyncio.to_thread(rotate))
                frame = b"frame-%05d" % i
                pub.publish_media(frame)
                frames.append(frame)
                if i % (FPS // MESSAGES_PER_S) == 0:
                    body = f"m{len(messages)}"
                    await pub.send_message(body)
                    messages.append(body)
                i += 1
                await asyncio.sleep(max(0.0, start + i / FPS - time.monotonic()))
            await rotation
            for region, s in subs.items():
                got = await asyncio.wait_for(take(s.messages(), len(messages)), DEADLINE)
                assert [(m.sender, m.id, m.body) for m in got] == [
                    ("pub", n + 1, body) for n, body in enumerate(messages)], region
                await asyncio.sleep(0.5)  # the last frames' way
                media = received[region]
                assert media == [f for f in frames if f in media], region  # in order, once
                # media is unreliable, but the rotation costs none of it: what an edge may
                # drop on a busy machine (a frame it could not send in time) aside
                assert len(media) >= 0.98 * len(frames), (region, len(media), len(frames))
                extra = await take_within(s.messages(), 1, 0.5)
                assert extra == [], (region, extra)  # and nothing twice
            for task in collectors:
                task.cancel()

    asyncio.run(main())
    assert rotated["epoch"] == 2 and rotated["sealing_epoch"] == 1
    assert rotated["epochs"] == [1, 2]
    assert 0 < rotated["seals_in_s"] <= OVERLAP_S < rotated["retires_in_s"] <= 2 * OVERLAP_S

    def phases() -> list[str]:
        return [e["peer"] for e in cli_json("admin", "events", "--since", "120")
                if e["kind"] == "fabric-key"]

    wait_for(lambda: phases() == ["announced", "sealing", "steady"], DEADLINE,
             "the rotation to go through its three phases")
    after = counters()
    for region in REGIONS:
        for name in KEY_DROPS:
            assert after[region].get(name, 0) == before[region].get(name, 0), (region, name)
    (entry,) = [e for e in cli_json("admin", "audit") if e["action"] == "rotate-fabric-key"]
    assert entry["actor"].startswith("admin/operator/") and entry["detail"] == "epoch 2"
    # and the mesh works on the new key alone
    second = run_cli("admin", "rotate-fabric-key")
    assert second.returncode == 0 and "epoch 3" in second.stdout, second.stderr


def test_rotating_the_ca_and_every_certificate_under_traffic_keeps_every_session(
        home, tmp_path, start_mesh):
    """`skymesh certs rotate-ca`, every certificate reissued (controller, admin, relays, edges)
    and the old CA pruned from the bundle while a publisher sends messages: no relay session
    drops, every message arrives, and new sessions and admin calls work on the new CA."""
    from skymesh import certs
    from skymesh.cli import mesh

    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    start_mesh("--regions", str(regions), "--latency-matrix", str(matrix))
    since = time.time()
    ca_dir = home / "certs"
    old_ca = certs.load_cert(ca_dir / certs.CA_CERT)

    def rotate() -> None:
        proc = run_cli("certs", "rotate-ca", "--json", timeout=30)
        assert proc.returncode == 0, proc.stderr
        mesh.mesh_identities(list(REGIONS))  # reissues what the old CA signed
        mesh.local_secrets(len(REGIONS))  # and the edges' certificate
        proc = run_cli("certs", "prune-bundle", timeout=30)
        assert proc.returncode == 0, proc.stderr

    async def main():
        async with AsyncExitStack() as stack:
            pub = await session(stack, "aa", "certs", "pub")
            subs = {r: await session(stack, r, "certs", f"sub-{r}") for r in ("bb", "cc")}
            await asyncio.wait_for(members_known("certs", {"bb", "cc"}), DEADLINE)
            rotation = None
            sent = []
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < 6.0:
                if rotation is None and elapsed >= 1.0:
                    rotation = asyncio.create_task(asyncio.to_thread(rotate))
                sent.append(f"m{len(sent)}")
                await pub.send_message(sent[-1])
                await asyncio.sleep(0.1)
            await rotation
            for region, s in subs.items():
                got = await asyncio.wait_for(take(s.messages(), len(sent)), DEADLINE)
                assert [m.body for m in got] == sent, region
            # a session opened now meets the edge's reissued certificate (it looks for one
            # every few seconds) and is checked against the bundle of the new CA only
            late = None
            deadline = time.monotonic() + DEADLINE
            while late is None:
                try:
                    late = await session(stack, "bb", "certs", "late")
                except Exception:  # the edge still serves the old CA's certificate
                    assert time.monotonic() < deadline, "no edge served the new certificate"
                    await asyncio.sleep(0.5)
            await pub.send_message("after")
            [m] = await asyncio.wait_for(take(late.messages(), 1), DEADLINE)
            assert m.body == "after"

    asyncio.run(main())
    assert certs.load_cert(ca_dir / certs.CA_CERT) != old_ca
    assert certs.load_bundle(ca_dir / certs.BUNDLE) == [certs.load_cert(ca_dir / certs.CA_CERT)]
    status = cli_json("admin", "status")  # the admin certificate of the new CA
    assert status["relays"] == len(REGIONS)
    dropped = [e for e in cli_json("admin", "events", "--since", str(time.time() - since + 5))
               if e["kind"] == "relay-disconnected"]
    assert dropped == []
