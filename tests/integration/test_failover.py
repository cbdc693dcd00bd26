"""Failover on a live local mesh: real relay processes, real QUIC sessions, regions taken
away under traffic.

Five regions; cc is in GB, the others in the EU. Inside the eu zone, aa reaches bb through
dd (20 ms one way), with ee as the backup (40 ms); the direct link is slow (100 ms) and cc,
the global transit, is outside the zone."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack

import pytest
from support import cli_json, run_cli, try_json, wait_for, write_matrix, write_regions

from sdk.client import connect
from sdk.errors import RegionDrained
from skymesh.cli import admin, drillstats, mesh, traffic

REGIONS = {"aa": (50.0, 8.0, "DE"), "bb": (48.0, 2.0, "FR"), "cc": (52.0, 0.0, "GB"),
           "dd": (45.0, 9.0, "DE"), "ee": (46.0, 3.0, "FR")}
RTTS = {("aa", "bb"): 200, ("aa", "cc"): 10, ("cc", "bb"): 10, ("aa", "dd"): 20,
        ("dd", "bb"): 20, ("aa", "ee"): 40, ("ee", "bb"): 40, ("cc", "dd"): 60,
        ("cc", "ee"): 60, ("dd", "ee"): 60}
POLICY = """zones:
  global: {description: everything, all: true}
  eu: {description: EU only, countries: [DE, FR]}
"""
DEADLINE = 20.0
RATE = 100.0  # media frames per second
GAP_LIMIT_S = 1.5  # generous for a loaded CI machine; bench/failover.py measures the real gap


@pytest.fixture
def failover_mesh(tmp_path, start_mesh):
    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    (tmp_path / "policy.yaml").write_text(POLICY)
    start_mesh("--regions", str(regions), "--latency-matrix", str(matrix), "--policy",
               str(tmp_path / "policy.yaml"))
    return mesh.read_state()


def eu_path() -> list[str] | None:
    """The eu path from aa to bb, None while there is none (as after a restart)."""
    reply = try_json("admin", "path", "aa", "bb", "--zone", "eu")
    return reply["path"] if reply else None


def counters() -> dict[str, dict]:
    return {r["id"]: r["counters"] for r in cli_json("admin", "regions")}


async def session(stack: AsyncExitStack, region: str, channel: str, uid: str):
    e = traffic.resolve_edge(admin.controller_address(None), region)
    tok = traffic.local_token("demo", channel, uid, "eu")
    s = await stack.enter_async_context(connect(e.host, e.port, tok, channel, e.ca))
    await asyncio.wait_for(s.join(), DEADLINE)
    return s


async def subscribed(channel: str, region: str) -> None:
    while True:
        chans = await asyncio.to_thread(admin.channels, admin.controller_address(None))
        if any(c["channel"] == f"demo/{channel}" and region in c["subscriber_regions"]
               for c in chans):
            return
        await asyncio.sleep(0.05)


async def stream_through(fault, channel: str, seconds: float = 7.0, fault_at: float = 2.0
                         ) -> tuple[list[float], int, traffic.Received, int]:
    """Publish eu media and messages from aa to a subscriber at bb for `seconds`, calling
    `fault()` (in a thread) `fault_at` seconds in. Returns the media arrival times, the
    frames sent, what the subscriber measured and the messages sent."""
    arrivals: list[float] = []
    got = traffic.Received()
    async with AsyncExitStack() as stack:
        pub = await session(stack, "aa", channel, "pub")
        sub = await session(stack, "bb", channel, "sub")
        await asyncio.wait_for(subscribed(channel, "bb"), DEADLINE)

        async def media():
            async for data in sub.media():
                arrivals.append(time.monotonic())
                got.on_media(data, time.time_ns())

        async def messages():
            async for m in sub.messages():
                got.on_message(m.sender, m.id)

        readers = [asyncio.ensure_future(media()), asyncio.ensure_future(messages())]
        start = time.monotonic()
        sent = sent_messages = 0
        faulted = None
        while (now := time.monotonic()) < start + seconds:
            if faulted is None and now >= start + fault_at:
                faulted = asyncio.ensure_future(asyncio.to_thread(fault))  # publishing goes on
            sent += 1
            pub.publish_media(traffic.frame(sent, 200))
            if sent % 10 == 0:
                sent_messages += 1
                await pub.send_message(f"m{sent_messages}")
            await asyncio.sleep(max(0.0, start + sent / RATE - time.monotonic()))
        await faulted
        # every message arrives in the end (retransmitted across the reroute)
        deadline = time.monotonic() + DEADLINE
        while got.messages < sent_messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for r in readers:
            r.cancel()
    return arrivals, sent, got, sent_messages


def largest_gap(arrivals: list[float]) -> float:
    return drillstats.largest_gap(arrivals, arrivals[0], arrivals[-1]) if arrivals else 0.0


def gap_report(arrivals: list[float], fault_at: float) -> str:
    """Where the largest gap was, for the assertion message."""
    gaps = [(b - a, a) for a, b in zip(arrivals, arrivals[1:], strict=False)]
    gap, at = max(gaps, default=(0.0, 0.0))
    return f"largest gap {gap:.3f} s starting {at - fault_at:+.3f} s from the fault"


def media_expired(before: dict, after: dict) -> int:
    """Media the edges dropped as stale since `before`."""
    return sum(c.get("edge.media_expired", 0) - before.get(region, {}).get("edge.media_expired", 0)
               for region, c in after.items())


def foreign_zone_traffic(before: dict, after: dict) -> dict:
    """eu traffic seen by cc (outside the zone), and datagrams dropped as of a foreign zone."""
    seen = {}
    for region, c in after.items():
        for k, v in c.items():
            grew = v - before.get(region, {}).get(k, 0)
            if grew and (k == "dropped.foreign-zone" or (region == "cc" and ".eu." in k)):
                seen[f"{region}:{k}"] = grew
    return seen


def test_killing_a_transit_region_moves_traffic_to_the_backup_at_once(failover_mesh):
    state = failover_mesh
    assert eu_path() == ["aa", "dd", "bb"]
    before = counters()
    killed_at = []

    def kill_dd():
        killed_at.append(time.time())
        killed_at.append(time.monotonic())
        assert mesh.kill(state, "dd")

    arrivals, sent, got, sent_messages = asyncio.run(stream_through(kill_dd, "transit"))
    assert sent_messages > 0 and got.messages == sent_messages, got.summary()
    assert got.duplicates == 0 and got.out_of_order == 0
    assert got.media > sent * 0.8, got.summary()
    gap = largest_gap(arrivals)
    assert gap < GAP_LIMIT_S, (gap_report(arrivals, killed_at[1]), {
        r: {k: v - before.get(r, {}).get(k, 0) for k, v in c.items()
            if v != before.get(r, {}).get(k, 0)} for r, c in counters().items()})
    assert foreign_zone_traffic(before, counters()) == {}
    # the controller saw dd's session end and repaired the routes, and aa's probes found the
    # link dead (whichever came first moved the traffic; the blackhole test below has no
    # controller to help)
    wait_for(lambda: eu_path() == ["aa", "ee", "bb"], DEADLINE, "the controller's repair")
    wait_for(lambda: ("aa", "link-down", "dd") in event_kinds(killed_at[0]), DEADLINE,
             "aa's probes to notice")


def event_kinds(since: float) -> set[tuple[str, str, str]]:
    events = admin.events(admin.controller_address(None), since=since)
    return {(e["region"], e["kind"], e["peer"]) for e in events}


def test_a_blackholed_transit_region_is_found_by_probes_and_routed_around(failover_mesh):
    """dd stays connected to the controller but drops every datagram: only the relays'
    probes can tell."""
    before = counters()
    at = []

    def blackhole_dd():
        at.append(time.time())
        admin.chaos(admin.controller_address(None), "dd", drop_all=True)

    arrivals, sent, got, sent_messages = asyncio.run(stream_through(blackhole_dd, "hole"))
    assert got.messages == sent_messages and got.duplicates == 0 and got.out_of_order == 0
    assert largest_gap(arrivals) < GAP_LIMIT_S, largest_gap(arrivals)
    assert foreign_zone_traffic(before, counters()) == {}
    events = admin.events(admin.controller_address(None), since=at[0])
    down = [e for e in events if (e["region"], e["kind"], e["peer"]) == ("aa", "link-down", "dd")]
    assert down and ("aa", "reroute", "dd") in event_kinds(at[0])
    assert down[0]["at"] - at[0] < 1.0  # 3 probes at 100 ms, and their timeout
    wait_for(lambda: eu_path() == ["aa", "ee", "bb"], DEADLINE, "the controller's repair")
    # the hole closes: the link comes back up and, measured again, carries the route again
    admin.chaos(admin.controller_address(None), "dd")
    wait_for(lambda: ("aa", "link-up", "dd") in event_kinds(at[0]), DEADLINE, "link up")
    wait_for(lambda: eu_path() == ["aa", "dd", "bb"], DEADLINE * 2, "the route back")


def test_traffic_goes_on_while_the_controller_is_away_and_resumes_without_a_gap(
        failover_mesh):
    state = failover_mesh
    version = cli_json("admin", "status")["route_version"]

    def restart_controller():
        assert mesh.kill(state, "controller")
        time.sleep(1.5)  # the controller is away: relays forward on their last tables
        mesh.restart(state, "controller")

    arrivals, sent, got, sent_messages = asyncio.run(
        stream_through(restart_controller, "static", seconds=8.0))
    assert got.messages == sent_messages and got.duplicates == 0 and got.out_of_order == 0
    assert largest_gap(arrivals) < 0.5, largest_gap(arrivals)
    assert got.media >= sent * 0.95, got.summary()
    # the relays came back to the new controller with their tables: no older version
    # replaced them, and once resynchronised it computes newer ones
    wait_for(lambda: cli_json("admin", "status")["converged"], DEADLINE * 2, "convergence")
    status = cli_json("admin", "status")
    assert status["route_version"] >= version
    assert all(c.get("tables_rejected", 0) == 0 for c in counters().values())
    assert eu_path() == ["aa", "dd", "bb"]


def test_relays_reroute_on_their_own_while_the_controller_is_away(failover_mesh):
    state = failover_mesh

    def controller_and_transit_die():
        assert mesh.kill(state, "controller")
        assert mesh.kill(state, "dd")
        time.sleep(2.0)
        mesh.restart(state, "controller")

    arrivals, sent, got, sent_messages = asyncio.run(
        stream_through(controller_and_transit_die, "alone", seconds=8.0))
    assert got.messages == sent_messages and got.duplicates == 0 and got.out_of_order == 0
    assert largest_gap(arrivals) < GAP_LIMIT_S, largest_gap(arrivals)
    # the new controller learns the topology from the relays and agrees with aa's reroute
    wait_for(lambda: eu_path() == ["aa", "ee", "bb"], DEADLINE * 2, "routes after the restart")


def test_drain_moves_transit_off_a_region_without_loss_and_refuses_new_sessions(
        failover_mesh):
    address = admin.controller_address(None)

    def drain_dd():
        reply = admin.drain(address, "dd")
        assert reply["drained_regions"] == ["dd"]

    before = counters()
    arrivals, sent, got, sent_messages = asyncio.run(stream_through(drain_dd, "drain"))
    assert eu_path() == ["aa", "ee", "bb"]  # transit moved off dd
    assert got.messages == sent_messages and got.duplicates == 0 and got.out_of_order == 0
    # make-before-break: not one frame lost to the switch. An edge stalled by the busy host
    # drops media queued past its deadline (15 ms) as stale; those it counts, and they are
    # the only frames allowed missing (the counters reach the controller within a report)
    if missing := sent - got.media:
        wait_for(lambda: media_expired(before, counters()) >= missing, DEADLINE,
                 f"the edges to count the {missing} missing frames as stale: {got.summary()}")
    assert largest_gap(arrivals) < 0.2
    # new sessions at dd are refused; the drain survives a controller restart
    assert next(r for r in admin.regions(address) if r["id"] == "dd")["drained"]
    with pytest.raises(admin.AdminError, match="drained"):
        traffic.resolve_edge(address, "dd")

    async def join_dd():
        e = traffic.resolve_edge(address, "aa")
        dd = next(r for r in admin.regions(address) if r["id"] == "dd")
        host, _, port = dd["edge_addr"].rpartition(":")
        tok = traffic.local_token("demo", "late", "late", "eu")
        async with connect(host, int(port), tok, "late", e.ca) as s:
            await asyncio.wait_for(s.join(), DEADLINE)
    with pytest.raises(RegionDrained):
        asyncio.run(join_dd())
    state = mesh.read_state()
    assert mesh.kill(state, "controller")
    mesh.restart(state, "controller")
    wait_for(lambda: try_json("admin", "regions") is not None, DEADLINE, "the controller")
    assert next(r for r in admin.regions(address) if r["id"] == "dd")["drained"]
    admin.drain(address, "dd", drained=False)
    wait_for(lambda: eu_path() == ["aa", "dd", "bb"], DEADLINE * 2, "transit back on dd")


def test_the_drill_command_measures_a_blackhole_and_writes_its_report(failover_mesh, tmp_path):
    plan = cli_json("drill", "remove-region", "dd", "--dry-run")
    assert plan["dry_run"] and plan["routes_carried"] >= 2
    assert {(f["src"], f["dst"]) for f in plan["flows"]} >= {("aa", "bb"), ("bb", "aa")}
    proc = run_cli("drill", "remove-region", "dd", "--mode", "blackhole", "--duration", "3s",
                   "--before", "2", "--after", "3", "--report", str(tmp_path / "r"), "--json",
                   timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("detect_ms", "reroute_ms", "gap_ms", "media_lost", "messages_sent",
                "messages_lost", "residency_violations", "flows"):
        assert key in result
    assert result["messages_sent"] > 0 and result["messages_lost"] == 0
    assert result["residency_violations"] == 0
    assert 0 < result["detect_ms"] < 2000
    assert result["gap_ms"]["max"] < GAP_LIMIT_S * 1000
    written = sorted(p.suffix for p in (tmp_path / "r").iterdir())
    assert written == [".json", ".png", ".txt"]


def test_a_drill_that_would_leave_routes_without_a_path_needs_force(tmp_path, start_mesh):
    """aa and bb reach each other only through cc: taking cc away cuts them apart."""
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0),
                                                   "cc": (49.0, 5.0)})
    matrix = write_matrix(tmp_path / "matrix.csv", {("aa", "cc"): 10, ("cc", "bb"): 10})
    start_mesh("--regions", str(regions), "--latency-matrix", str(matrix))
    plan = cli_json("drill", "remove-region", "cc", "--dry-run")
    assert {(c["src"], c["dst"]) for c in plan["unreachable"]} == {("aa", "bb"), ("bb", "aa")}
    shown = run_cli("drill", "remove-region", "cc", "--dry-run")
    assert shown.returncode == 0 and "the drill would need --force" in shown.stdout
    refused = run_cli("drill", "remove-region", "cc", "--duration", "2s", timeout=60)
    assert refused.returncode == 2
    assert "no path" in refused.stderr and "global:aa>bb" in refused.stderr
    assert "--force" in refused.stderr
    # nothing was touched
    assert not [e for e in cli_json("admin", "events") if e["kind"] == "chaos"]
