"""Chaos drills against a running mesh (the local mesh by default): synthetic channel traffic
over the routes a failure touches, the failure (a region's relays killed or blackholed, one
link cut, the controller killed), a hold, the recovery, and what the traffic saw.

The measuring is in `skymesh.cli.drillstats`; this module drives sessions, faults and reports."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import secrets
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from skymesh.cli import admin, mesh, traffic
from skymesh.cli.admin import AdminError
from skymesh.cli.common import add_log_format, fail, parse_ttl, run_loop, setup_logging
from skymesh.cli.drillstats import (
    Flow,
    FlowRecord,
    flows_through,
    next_slot,
    residency_violations,
    spread,
    summarize,
)

KINDS = ("remove-region", "partition", "kill-controller", "kill-store")
STATE_KILLS = ("kill-controller", "kill-store")  # no routes move: no paths to come back


class DrillError(Exception):
    """A drill that cannot run as asked, with the reason to show."""


@dataclass
class DrillOptions:
    kind: str  # one of KINDS
    targets: tuple[str, ...] = ()  # the region, or both ends of the link
    duration_s: float = 30.0  # how long the failure holds
    mode: str = "auto"  # remove-region: kill | blackhole | auto (kill on the local mesh)
    before_s: float = 5.0
    after_s: float = 10.0
    rate: float = 50.0  # media frames per second per flow
    messages_per_s: float = 5.0
    max_flows: int = 12
    force: bool = False
    dry_run: bool = False
    controller: str | None = None
    resolver: str | None = None  # the edge resolvers the clients ask (None: the local mesh's)


# -- planning -------------------------------------------------------------------------------

def all_routes(address: str) -> list[dict]:
    rows = []
    for r in admin.regions(address):
        if r["connected"]:
            rows += admin.routes(address, r["id"])["routes"]
    return rows


def plan(address: str, o: DrillOptions) -> dict:
    """What the drill would touch: the flows it measures, and the plan-based impact."""
    known = {r["id"] for r in admin.regions(address)}
    for t in o.targets:
        if t not in known:
            raise DrillError(f"unknown region {t!r}")
    rows = all_routes(address)
    if o.kind == "remove-region":
        flows, carried = flows_through(rows, region=o.targets[0], limit=o.max_flows)
        impact = admin.plan_failover(address, o.targets[0], None, None)
    elif o.kind == "partition":
        flows, carried = flows_through(rows, link=(o.targets[0], o.targets[1]),
                                       limit=o.max_flows)
        impact = admin.plan_failover(address, None, list(o.targets), None)
    else:
        multi = sorted((Flow(r["zone"], r["path"][0], r["dst"], tuple(r["path"]))
                        for r in rows if len(r["path"]) >= 3),
                       key=lambda f: (f.zone, f.src, f.dst))
        flows, carried, impact = spread(multi, o.max_flows), len(multi), None
    unreachable = [c for c in impact["changes"] if not c["reachable"]] if impact else []
    return {"kind": o.kind, "targets": list(o.targets), "routes_carried": carried,
            "flows": [{"zone": f.zone, "src": f.src, "dst": f.dst, "path": list(f.path)}
                      for f in flows],
            "impact": impact, "unreachable": unreachable, "_flows": flows}


# -- faults ---------------------------------------------------------------------------------

def fault_actions(address: str, o: DrillOptions, hold_until: float
                  ) -> tuple[Callable[[], str], Callable[[], str]]:
    """(inflict, restore) for the drill; each returns what it did, for the report."""
    state = mesh.running_state()
    local = state is not None and state["controller"] == address
    if o.kind == "kill-controller":
        if not local:
            raise DrillError("kill-controller needs the local mesh (its controller's process)")
        if state.get("replicas"):  # the leading replica, as the worst case
            leader = admin.status(address)["leader"]
            if not leader:
                raise DrillError("no controller replica leads: nothing to kill")
            return (lambda: mesh.kill(state, leader) and f"killed the leading replica {leader}",
                    lambda: f"restarted replica {leader} "
                            f"(pid {mesh.restart(state, leader)})")
        return (lambda: mesh.kill(state, "controller") and "killed the controller",
                lambda: f"restarted the controller (pid {mesh.restart(state, 'controller')})")
    if o.kind == "kill-store":
        if not local or not state["pids"].get("etcd"):
            raise DrillError("kill-store needs the local mesh's own etcd (`skymesh up "
                             "--controllers N`)")
        return (lambda: mesh.kill(state, "etcd") and "killed the local etcd",
                lambda: f"restarted the local etcd (pid {mesh.restart(state, 'etcd')})")
    if o.kind == "partition":
        a, b = o.targets

        def cut() -> str:
            admin.chaos(address, a, [b], until=hold_until)
            admin.chaos(address, b, [a], until=hold_until)
            return f"cut the link {a}-{b} (both relays drop each other's datagrams)"

        def mend() -> str:
            admin.chaos(address, a)
            admin.chaos(address, b)
            return f"mended the link {a}-{b}"
        return cut, mend
    region = o.targets[0]
    mode = o.mode if o.mode != "auto" else ("kill" if local else "blackhole")
    if mode == "kill":
        if not local:
            raise DrillError("--mode kill needs the local mesh; use --mode blackhole")
        return (lambda: mesh.kill(state, region) and f"killed the relay of {region}",
                lambda: f"restarted the relay of {region} (pid {mesh.restart(state, region)})")
    return (lambda: admin.chaos(address, region, drop_all=True, until=hold_until)
            or f"blackholed {region} (its relay drops every datagram to and from peers)",
            lambda: admin.chaos(address, region) or f"ended the blackhole of {region}")


# -- traffic --------------------------------------------------------------------------------

async def _session(stack: AsyncExitStack, how: traffic.Resolving, region: str, zone: str,
                   channel: str, uid: str):
    """A drill client of `region`, at the edge the resolvers offer there."""
    tok = traffic.local_token("demo", channel, uid, zone)
    s = await traffic.resolved_session(stack, how, tok, channel, region=region)
    await asyncio.wait_for(s.join(), 15)
    return s


async def _subscribed(address: str, wanted: set[tuple[str, str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chans = await asyncio.to_thread(admin.channels, address)
        have = {(c["zone"], c["channel"], r) for c in chans for r in c["subscriber_regions"]}
        if wanted <= have:
            return
        await asyncio.sleep(0.2)
    raise DrillError("the controller did not learn every drill subscriber in time")


async def _converged(address: str, relays: int, timeout: float) -> float | None:
    """Seconds until the controller has `relays` relays again and answers converged (None:
    not within timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            status = await asyncio.to_thread(admin.status, address)
            if status["converged"] and status["relays"] >= relays:
                return time.monotonic() - start
        except admin.AdminError:
            pass  # a controller still starting
        await asyncio.sleep(0.25)
    return None


async def _new_leader(address: str, killed: str, relays: int, above: int,
                      timeout: float) -> float | None:
    """Seconds until a replica other than `killed` leads and every one of `relays` relays has
    acknowledged a route version above `above` (None: not within timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            s = await asyncio.to_thread(admin.status, address, 1.0)
            if s["leader"] and s["leader"] != killed and s["relays"] >= relays and \
                    s["relays_acked"] >= relays and s["route_version"] > above:
                return time.monotonic() - start
        except admin.AdminError:
            pass  # the replica asked was the one killed, or none leads yet
        await asyncio.sleep(0.05)
    return None


def _versions(address: str) -> dict[str, int]:
    """The route version each relay acknowledged last, by region."""
    return {r["id"]: r["route_version"] for r in admin.regions(address) if r["connected"]}


async def _store_away(address: str, region: str, timeout: float) -> dict:
    """With etcd away: how soon the replicas see it, and whether a write is refused (it
    must be, with UNAVAILABLE) while reads go on."""
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < timeout:
        try:
            s = await asyncio.to_thread(admin.status, address, 1.0)
            if not s["store"]["healthy"]:
                seen = time.monotonic() - start
                break
        except admin.AdminError:
            pass
        await asyncio.sleep(0.1)
    refused = ""
    if seen is not None:
        try:  # ending a chaos that is not there: a write (audited), harmless
            await asyncio.to_thread(functools.partial(admin.chaos, address, region,
                                                      patience=0.0))
        except admin.AdminError as e:
            refused = str(e)
    return {"store_away_seen_ms": None if seen is None else round(seen * 1000, 1),
            "write_refused": refused}


async def _store_back(address: str, timeout: float) -> float | None:
    """Seconds until the store answers again and a replica leads (None: not in time)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            s = await asyncio.to_thread(admin.status, address, 1.0)
            if s["store"]["healthy"] and s["leader"]:
                return time.monotonic() - start
        except admin.AdminError:
            pass
        await asyncio.sleep(0.1)
    return None


async def _paths_back(address: str, flows: list[Flow], timeout: float) -> float | None:
    """Seconds until every flow's route is its pre-drill path again (None: not in time)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            paths = [await asyncio.to_thread(admin.path, address, f.src, f.dst, f.zone)
                     for f in flows]
            if all(tuple(p["path"]) == f.path for p, f in zip(paths, flows, strict=True)):
                return time.monotonic() - start
        except admin.AdminError:
            pass
        await asyncio.sleep(0.5)
    return None


def _counters(address: str) -> dict[str, dict[str, int]]:
    return {r["id"]: r["counters"] for r in admin.regions(address)}


async def run(o: DrillOptions, say: Callable[[str], None] = print) -> dict:
    address = admin.controller_address(o.controller)
    p = plan(address, o)
    flows: list[Flow] = p.pop("_flows")
    if o.dry_run:  # it shows the routes left without a path and that --force is needed
        return {**p, "dry_run": True}
    if p["unreachable"] and not o.force:
        lost = p["unreachable"]
        pairs = ", ".join(f"{c['zone']}:{c['src']}>{c['dst']}" for c in lost[:8])
        raise DrillError(f"this drill would leave {len(lost)} route(s) with no path inside "
                         f"their zone ({pairs}{', ...' if len(lost) > 8 else ''}); pass "
                         "--force to run it anyway")
    if not flows:
        raise DrillError(f"no route runs through {' - '.join(o.targets) or 'several regions'}: "
                         "nothing to measure")
    zones = {z["name"]: z["regions"] for z in admin.zones(address)["zones"]}
    tag = secrets.token_hex(3)
    records = [FlowRecord(f) for f in flows]
    say(f"drill {o.kind} {' '.join(o.targets)}: {len(flows)} flows of "
        f"{p['routes_carried']} routes carried, {o.rate:g} frames/s each")
    how = traffic.resolving(o.resolver)
    async with AsyncExitStack() as stack:
        pairs = []
        for i, r in enumerate(records):
            channel = f"drill-{tag}-{i}"
            pub = await _session(stack, how, r.flow.src, r.flow.zone, channel, f"pub{i}")
            sub = await _session(stack, how, r.flow.dst, r.flow.zone, channel, f"sub{i}")
            pairs.append((pub, sub))
        await _subscribed(address, {(r.flow.zone, f"demo/drill-{tag}-{i}", r.flow.dst)
                                    for i, r in enumerate(records)}, 30)
        counters_before = await asyncio.to_thread(_counters, address)
        before = await asyncio.to_thread(admin.status, address)
        relays = before["relays"]
        versions_before = await asyncio.to_thread(_versions, address)
        readers = []
        for r, (_, sub) in zip(records, pairs, strict=True):
            readers.append(asyncio.ensure_future(_read(sub, r)))
        stop = asyncio.Event()
        writers = [asyncio.ensure_future(_write(pub, r, o, stop))
                   for r, (pub, _) in zip(records, pairs, strict=True)]
        say(f"baseline for {o.before_s:g} s")
        await asyncio.sleep(o.before_s)
        hold_until = time.time() + o.duration_s + 60  # a crashed drill heals itself
        inflict, restore = fault_actions(address, o, hold_until)
        fault_at = time.time()
        did = await asyncio.to_thread(inflict)
        say(f"{did}; holding {o.duration_s:g} s")
        # replicas: the time until another leads and every relay holds its newer routes
        new_leader = asyncio.ensure_future(
            _new_leader(address, before["leader"], relays, before["route_version"],
                        o.duration_s) if o.kind == "kill-controller" and len(
                before["replicas"]) > 1 else asyncio.sleep(0))
        store_away = asyncio.ensure_future(
            _store_away(address, flows[0].src, o.duration_s) if o.kind == "kill-store"
            else asyncio.sleep(0))
        await asyncio.sleep(o.duration_s)
        restored_at = time.time()
        undid = await asyncio.to_thread(restore)
        say(f"{undid}; watching for {o.after_s:g} s")
        store_back = asyncio.ensure_future(
            _store_back(address, o.after_s + 30) if o.kind == "kill-store"
            else asyncio.sleep(0))
        recovery = asyncio.ensure_future(_converged(address, relays, o.after_s + 60))
        paths_back = asyncio.ensure_future(
            _paths_back(address, flows, o.after_s + 60)
            if o.kind not in ("kill-controller", "kill-store")
            else asyncio.sleep(0))
        await asyncio.sleep(o.after_s)
        end_at = time.time()
        stop.set()
        await asyncio.gather(*writers)
        say("waiting for every message to arrive")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                sum(len(m) for m in r.messages_got.values()) < r.messages_sent for r in records):
            await asyncio.sleep(0.1)
        recovery_s, back_s = await recovery, await paths_back
        new_leader_s = await new_leader
        away, back_s_store = await store_away, await store_back
        versions_after = await asyncio.to_thread(_versions, address)
        await asyncio.sleep(1.5)  # a report interval: the relays' counters catch up
        counters_after = await asyncio.to_thread(_counters, address)
        for t in readers:
            t.cancel()
    events = await asyncio.to_thread(admin.events, address, fault_at - 1.0)
    # a blackhole or a cut starts when the relay applies it (its own event), which on a busy
    # host can be a good while after the request
    asked_at = fault_at
    applied = [e["at"] for e in events if e["kind"] == "chaos" and e["region"] in o.targets
               and e["region"] != "controller" and asked_at - 0.5 <= e["at"] < restored_at]
    if applied:
        fault_at = min(applied)
    result = summarize(records, fault_at, restored_at, end_at, 1.0 / o.rate)
    result.update(_event_times(events, o, fault_at))
    result.update({
        "kind": o.kind, "targets": list(o.targets), "duration_s": o.duration_s,
        "fault": did, "restore": undid, "fault_asked_at": asked_at, "fault_at": fault_at,
        "restored_at": restored_at,
        "end_at": end_at, "routes_carried": p["routes_carried"],
        "converged_after_s": None if recovery_s is None else round(recovery_s, 1),
        # replicas: from the kill until a new leader's routes were acknowledged by every
        # relay; and relays whose acknowledged version went down (must be 0)
        "new_leader_ms": None if new_leader_s is None else round(new_leader_s * 1000, 1),
        "version_regressions": sum(versions_after.get(r, v) < v
                                   for r, v in versions_before.items()),
        # etcd away: seen by the replicas after, a write refused (why), back and led after
        **(away or {}),
        "store_back_ms": None if back_s_store is None else round(back_s_store * 1000, 1),
        "recovery_s": None if back_s is None else round(back_s, 1),
        "residency_violations": len(residency_violations(counters_before, counters_after,
                                                         zones)),
        "residency_detail": residency_violations(counters_before, counters_after, zones),
        "events": [e for e in events if e["at"] >= fault_at - 1.0],
        "impact": p["impact"]})
    result["_records"] = records
    return result


async def _read(sub, r: FlowRecord) -> None:
    async def media():
        async for data in sub.media():
            parsed = traffic.parse_frame(data)
            if parsed:
                r.on_media(parsed[0], parsed[1] / 1e9, time.time())

    async def messages():
        async for m in sub.messages():
            r.on_message(m.sender, m.id)
    await asyncio.gather(media(), messages())


async def _write(pub, r: FlowRecord, o: DrillOptions, stop: asyncio.Event) -> None:
    """Frames at o.rate, as a live source makes them: a publisher that was stalled sends the
    frame of the moment, not a burst of those it missed (they are counted as skipped)."""
    start = time.monotonic()
    seq = slot = 0
    every = max(1, round(o.rate / o.messages_per_s)) if o.messages_per_s > 0 else 0
    while not stop.is_set():
        slot, skipped = next_slot(slot, time.monotonic() - start, o.rate)
        r.skipped += skipped
        seq += 1
        frame = traffic.frame(seq, 200)
        r.sent[seq] = traffic.parse_frame(frame)[1] / 1e9
        try:
            pub.publish_media(frame)
            if every and seq % every == 0:
                await pub.send_message(f"drill message {r.messages_sent + 1}")
                r.messages_sent += 1
        except Exception:  # a session torn down by the fault: the flow's loss shows it
            pass
        await asyncio.sleep(max(0.0, start + slot / o.rate - time.monotonic()))


def _event_times(events: list[dict], o: DrillOptions, fault_at: float) -> dict:
    """detect_ms: until the first relay declared a link to the failed region (or over the cut
    link) down; relay_reroute_ms: until the first relay moved routes to their backups."""
    if o.kind in ("kill-controller", "kill-store"):
        return {"detect_ms": None, "relay_reroute_ms": None}
    if o.kind == "partition":
        a, b = o.targets
        hit = {(a, b), (b, a)}
        down = [e for e in events if e["kind"] == "link-down" and (e["region"], e["peer"]) in hit]
        moved = [e for e in events if e["kind"] == "reroute" and (e["region"], e["peer"]) in hit]
    else:
        region = o.targets[0]
        down = [e for e in events if e["kind"] == "link-down" and e["peer"] == region]
        moved = [e for e in events if e["kind"] == "reroute" and e["peer"] == region]

    def first(es: list[dict]) -> float | None:
        return round((min(e["at"] for e in es) - fault_at) * 1000, 1) if es else None
    return {"detect_ms": first(down), "relay_reroute_ms": first(moved),
            "detections": len(down)}


# -- reports --------------------------------------------------------------------------------

def render(result: dict) -> str:
    if result.get("dry_run"):
        return render_plan(result)
    g, a, sp = result["gap_ms"], result["arrival_gap_ms"], result["gap_span_ms"]
    lines = [
        f"drill {result['kind']} {' '.join(result['targets'])}: {result['fault']}, held "
        f"{result['duration_s']:g} s; {result['restore']}",
        f"  detected in {_ms(result['detect_ms'])}, first relay rerouted in "
        f"{_ms(result['relay_reroute_ms'])}; traffic through again in "
        f"{_ms(result['reroute_ms'])} (median flow), {_ms(result['reroute_ms_max'])} (slowest)",
        f"  media gap per flow: p50 {_ms(g['p50'])}, p99 {_ms(g['p99'])}, max {_ms(g['max'])} "
        "(the most frames lost in a row, at the nominal frame spacing)",
        f"  send times those frames spanned: p50 {_ms(sp['p50'])}, p99 {_ms(sp['p99'])}, max "
        f"{_ms(sp['max'])} (also the publisher's own stalls)",
        f"  longest silence at the receivers: p50 {_ms(a['p50'])}, p99 {_ms(a['p99'])}, max "
        f"{_ms(a['max'])} (also the path's latency change and the host's jitter)",
        f"  media lost {result['media_lost']} of {result['media_sent']}"
        + (f" (publishers stalled by their host skipped {result['media_skipped']} more frames)"
           if result.get("media_skipped") else "") + "; messages lost "
        f"{result['messages_lost']} of {result['messages_sent']} (duplicated "
        f"{result['messages_duplicated']}, out of order {result['messages_out_of_order']})",
        f"  residency violations: {result['residency_violations']}"
        + (f"; new leader's routes at every relay after {_ms(result['new_leader_ms'])}, "
           f"version regressions {result['version_regressions']}"
           if result.get("new_leader_ms") is not None else "")
        + (f"; etcd away seen after {_ms(result.get('store_away_seen_ms'))}, a write "
           + ("refused: " + result["write_refused"] if result.get("write_refused")
              else "NOT refused")
           + f"; store back and led after {_ms(result['store_back_ms'])}"
           if result["kind"] == "kill-store" else ""),
        f"  after the recovery: routes back on their earlier paths "
        f"{_s(result['recovery_s']) if result['kind'] not in STATE_KILLS else '-'}, "
        f"controller converged {_s(result['converged_after_s'])}",
        "",
        "  FLOW                          GAP_MS   SPAN SILENCE  LOST  LATENCY_MS before / during / "
        "after"]
    for f in result["flows"]:
        lat = f["latency_ms"]
        lines.append(f"  {f['flow']:<30}{f['gap_ms']:>7}{f['gap_span_ms']:>7}"
                     f"{f['arrival_gap_ms']:>8}"
                     f"{f['media_lost']:>6}  {lat['before']} / {lat['during']} / {lat['after']}")
    return "\n".join(lines)


def render_plan(p: dict) -> str:
    lines = [f"dry run: drill {p['kind']} {' '.join(p['targets'])} (nothing touched)",
             f"  {p['routes_carried']} routes run through it; the drill would measure "
             f"{len(p['flows'])} flows:"]
    for f in p["flows"]:
        lines.append(f"    {f['zone']}:{f['src']}>{f['dst']}  via {' > '.join(f['path'])}")
    if p["impact"]:
        moved = [c for c in p["impact"]["changes"] if c["reachable"]]
        lines.append(f"  the plan: {len(moved)} routes move, {len(p['unreachable'])} become "
                     "unreachable")
        for c in p["unreachable"][:10]:
            lines.append(f"    no path: {c['zone']}:{c['src']}>{c['dst']} ({c['reason']})")
        if p["unreachable"]:
            lines.append("  the drill would need --force")
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} ms"


def _s(x: float | None) -> str:
    return "not within the wait" if x is None else f"in {x:.1f} s"


def write_report(result: dict, directory: Path) -> dict[str, str]:
    """The JSON file, the readable summary and the PNG timeline, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"drill-{result['kind']}-{'-'.join(result['targets']) or 'controller'}-" \
        f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(result['fault_at']))}"
    records = result.get("_records", [])
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    paths = {"json": directory / f"{stem}.json", "summary": directory / f"{stem}.txt",
             "timeline": directory / f"{stem}.png"}
    paths["json"].write_text(json.dumps(public, indent=1))
    paths["summary"].write_text(render(public) + "\n")
    timeline(records, public, paths["timeline"])
    return {k: str(v) for k, v in paths.items()}


def timeline(records: list[FlowRecord], result: dict, path: Path) -> None:
    """Latency of every delivered frame by send time, per flow; lost frames as marks at the
    bottom; the failure and the recovery as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = result["fault_at"]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for r in records:
        seqs = sorted(r.got)
        xs = [r.sent[s] - t0 for s in seqs]
        ys = [(r.got[s] - r.sent[s]) * 1000 for s in seqs]
        line, = ax.plot(xs, ys, linewidth=0.8, label=r.flow.name)
        lost = [r.sent[s] - t0 for s in r.sent.keys() - r.got.keys()]
        if lost:
            ax.plot(lost, [0] * len(lost), "|", color=line.get_color(), markersize=8)
    ax.axvline(0, color="red", linestyle="--", label="failure")
    ax.axvline(result["restored_at"] - t0, color="green", linestyle="--", label="recovery")
    ax.set_xlabel("seconds from the failure (by send time)")
    ax.set_ylabel("one-way latency (ms); lost frames marked at 0")
    ax.set_title(f"drill {result['kind']} {' '.join(result['targets'])}: gap p99 "
                 f"{_ms(result['gap_ms']['p99'])}, media lost {result['media_lost']}, "
                 f"messages lost {result['messages_lost']}")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command -----------------------------------------------------------------------------

def add_parsers(sub) -> None:
    group = sub.add_parser("drill", help="chaos drills: take a region, a link or the "
                           "controller away under synthetic traffic, and measure",
                           description="Run synthetic channel traffic (media and messages) "
                           "over the routes a failure touches, inflict the failure, hold it, "
                           "recover, and report detection and reroute times, media gaps and "
                           "loss, message loss (must be 0), residency violations (must be 0) "
                           "and latency before, during and after. Against the local mesh "
                           "unless --controller is given.")
    dsub = group.add_subparsers(title="drills", metavar="DRILL")
    d = dsub.add_parser("remove-region", help="take a region away (kill or blackhole its relay)")
    d.add_argument("region")
    d.add_argument("--mode", choices=("auto", "kill", "blackhole"), default="auto",
                   help="kill the relay process (local mesh) or make it drop every datagram; "
                   "auto: kill on the local mesh, else blackhole (default: %(default)s)")
    d.set_defaults(run=cmd_drill, kind="remove-region")
    d = dsub.add_parser("partition", help="cut the link between two regions")
    d.add_argument("a")
    d.add_argument("b")
    d.set_defaults(run=cmd_drill, kind="partition")
    d = dsub.add_parser("kill-controller", help="kill the controller (of replicas, the "
                        "leading one), hold, start it again (relays must forward on without a "
                        "gap; replicas: another must lead, and no relay's version go back)")
    d.set_defaults(run=cmd_drill, kind="kill-controller")
    d = dsub.add_parser("kill-store", help="kill the local mesh's etcd, hold, start it again "
                        "(relays forward on, reads go on, writes are refused with "
                        "UNAVAILABLE, then everything recovers by itself)")
    d.set_defaults(run=cmd_drill, kind="kill-store")
    for d in dsub.choices.values():
        d.add_argument("--duration", default="30s",
                       help="how long the failure holds: 90s, 2m or seconds (default: "
                       "%(default)s)")
        d.add_argument("--dry-run", action="store_true",
                       help="show the flows and the plan-based impact; touch nothing")
        d.add_argument("--force", action="store_true",
                       help="run even when the failure leaves some zone's pair with no path")
        d.add_argument("--report", type=Path, metavar="DIR",
                       help="write the JSON, a readable summary and a PNG timeline here")
        d.add_argument("--json", action="store_true", help="print the result as JSON")
        d.add_argument("--flows", type=int, default=12, metavar="N",
                       help="at most this many flows, spread over zones and sources "
                       "(default: %(default)s)")
        d.add_argument("--rate", type=float, default=50.0, metavar="FPS",
                       help="media frames per second per flow (default: %(default)s)")
        d.add_argument("--before", type=float, default=5.0, metavar="S",
                       help="seconds of baseline before the failure (default: %(default)s)")
        d.add_argument("--after", type=float, default=10.0, metavar="S",
                       help="seconds watched after the recovery (default: %(default)s)")
        d.add_argument("--controller", metavar="HOST:PORT",
                       help="controller address (default: the local mesh's)")
        d.add_argument("--resolver", metavar="HOST:PORT[,...]",
                       help="the edge resolvers the drill's clients ask (default: the local "
                       "mesh's)")
        admin.add_client_arguments(d)
        add_log_format(d)


def cmd_drill(args: argparse.Namespace) -> int:
    setup_logging("warning", "drill", args.log_format, drill=args.kind)
    try:
        duration = parse_ttl(args.duration)
    except ValueError:
        return fail(f"--duration: expected e.g. 30s, 2m or seconds, got {args.duration!r}")
    problems = [f"--{n} must be positive" for n, v in (
        ("flows", args.flows), ("rate", args.rate), ("duration", duration)) if not v > 0]
    if problems:
        return fail("; ".join(problems))
    targets = {"remove-region": lambda: (args.region,), "partition": lambda: (args.a, args.b),
               "kill-controller": tuple, "kill-store": tuple}[args.kind]()
    if args.kind == "partition" and args.a == args.b:
        return fail("partition: name two different regions")
    options = DrillOptions(
        kind=args.kind, targets=targets, duration_s=duration,
        mode=getattr(args, "mode", "auto"), before_s=args.before, after_s=args.after,
        rate=args.rate, max_flows=args.flows, force=args.force, dry_run=args.dry_run,
        controller=args.controller, resolver=args.resolver)
    say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    try:
        result = run_loop(run(options, say))
    except (DrillError, AdminError) as e:
        return fail(f"drill {args.kind}: {e}")
    if args.report and not result.get("dry_run"):
        paths = write_report(result, args.report)
        say(f"report: {paths['summary']}, {paths['json']}, {paths['timeline']}")
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(public, indent=1))
    else:
        print(render(public))
    bad = not public.get("dry_run") and (public["messages_lost"] or public["residency_violations"])
    return 1 if bad else 0


