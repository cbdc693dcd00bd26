"""What the dashboard shows, no I/O: the controller's regions, links and events (as
`skymesh admin` reads them) turned into the JSON the page reads; which events are new since
the last poll; the links a region took away with it; and a drill's timeline. Its shell
(`skymesh/cli/dashboard.py`) feeds it the controller's answers and the time."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# how a link's two directions (each reported by its own source) make one line on the map:
# the worse state wins
STATE_ORDER = {"up": 0, "unknown": 1, "degraded": 2, "down": 3}
REGION_STATES = ("connected", "drained", "unreachable")
# events that begin a failure (a drill's or not): a relay told to drop traffic, a relay gone,
# a region others cannot reach
FAULT_KINDS = ("chaos", "relay-disconnected", "region-unreachable")
# events that end it: the fault lifted, the relay back
RECOVERY_KINDS = ("chaos", "relay-connected", "region-reachable")
NO_CHAOS = "dropping traffic with nothing"  # the detail of a chaos that ends one
MAX_TIMELINE_EVENTS = 300


def link_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def event_key(e: Mapping) -> tuple:
    return (e["at"], e["region"], e["kind"], e["peer"], e["detail"], e.get("routes", 0))


def region_of(e: Mapping) -> str:
    """The region an event is about: the relay's own, or the one the controller names."""
    return e["peer"] if e["region"] == "controller" else e["region"]


def is_fault(e: Mapping) -> bool:
    if e["kind"] == "chaos":
        return e["detail"] != NO_CHAOS
    return e["kind"] in FAULT_KINDS


def is_recovery(e: Mapping) -> bool:
    if e["kind"] == "chaos":
        return e["detail"] == NO_CHAOS
    return e["kind"] in RECOVERY_KINDS


@dataclass
class KnownLink:
    a: str
    b: str
    rtt_ms: float | None = None
    cost_ms: float | None = None
    loss: float = 0.0
    jitter_ms: float = 0.0
    state: str = "unknown"
    listed: bool = False  # in the controller's latest list


def merge_links(links: Iterable[Mapping]) -> dict[tuple[str, str], KnownLink]:
    """Admin link rows (one per direction: `src` measured `dst`) as one link per region
    pair: the worse state, the mean RTT and cost of the directions measured, the worse loss
    and jitter."""
    out: dict[tuple[str, str], KnownLink] = {}
    rtts: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    for x in links:
        if x["src"] == x["dst"]:
            continue
        key = link_key(x["src"], x["dst"])
        link = out.setdefault(key, KnownLink(*key, state=x["state"], listed=True))
        if STATE_ORDER.get(x["state"], 1) > STATE_ORDER.get(link.state, 1):
            link.state = x["state"]
        if x.get("samples", 1) and x["state"] != "down" and x.get("rtt_ms"):
            rtts.setdefault(key, []).append(float(x["rtt_ms"]))
        if x.get("cost_ms"):
            costs.setdefault(key, []).append(float(x["cost_ms"]))
        link.loss = max(link.loss, float(x.get("loss", 0.0)))
        link.jitter_ms = max(link.jitter_ms, float(x.get("jitter_ms", 0.0)))
    for key, link in out.items():
        if rtts.get(key):
            link.rtt_ms = round(sum(rtts[key]) / len(rtts[key]), 1)
        if costs.get(key):
            link.cost_ms = round(sum(costs[key]) / len(costs[key]), 1)
    return out


def region_state(connected: bool, drained: bool, unreachable: bool) -> str:
    if not connected or unreachable:
        return "unreachable"
    return "drained" if drained else "connected"


class MeshView:
    """The map's state across polls. The controller forgets the links of a region whose
    relay is gone; the map keeps them, down, so that a region taken away shows its links
    cut. Which regions the controller found unreachable comes from its events."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], KnownLink] = {}
        self.unreachable: set[str] = set()

    def note_events(self, events: Iterable[Mapping]) -> None:
        """Events in the order they happened (region-unreachable, region-reachable)."""
        for e in events:
            if e["kind"] == "region-unreachable":
                self.unreachable.add(region_of(e))
            elif e["kind"] in ("region-reachable", "relay-connected"):
                self.unreachable.discard(region_of(e))

    def update(self, regions: Iterable[Mapping], links: Iterable[Mapping],
               status: Mapping | None = None, at: float = 0.0) -> dict:
        """The state the page draws, from one poll of the controller."""
        regions = list(regions)
        known_ids = {r["id"] for r in regions}
        connected = {r["id"] for r in regions if r["connected"]}
        listed = merge_links(links)
        for key in list(self.links):
            if key not in listed:
                old = self.links[key]
                if key[0] not in known_ids or key[1] not in known_ids:
                    del self.links[key]  # left the catalogue
                    continue
                # no longer measured: its region's relay is gone, so the link is down
                old.listed, old.state = False, "down"
        self.links.update(listed)
        for link in self.links.values():
            if link.listed and not ({link.a, link.b} <= connected):
                link.state = "down"
        out_regions = []
        for r in sorted(regions, key=lambda r: r["id"]):
            nodes = r.get("nodes") or []
            relays = len(nodes) if nodes else int(bool(r["connected"]))
            unreachable = r["id"] in self.unreachable
            state = region_state(r["connected"], r["drained"], unreachable)
            reason = ("no relay connected" if not r["connected"] else
                      "links to it down at several relays" if unreachable else "")
            out_regions.append({
                "id": r["id"], "name": r.get("name", r["id"]),
                "country": r.get("country", ""), "lat": r["lat"], "lon": r["lon"],
                "state": state, "connected": bool(r["connected"]),
                "drained": bool(r["drained"]), "unreachable": state == "unreachable",
                "reason": reason, "relays": relays,
                "sessions": sum(n.get("sessions", 0) for n in nodes),
                "edge_addr": r.get("edge_addr", "")})
        out_links = [{"a": k.a, "b": k.b, "rtt_ms": k.rtt_ms, "cost_ms": k.cost_ms,
                      "loss": k.loss, "jitter_ms": k.jitter_ms, "state": k.state,
                      "listed": k.listed}
                     for _, k in sorted(self.links.items())]
        counts = {s: sum(1 for r in out_regions if r["state"] == s) for s in REGION_STATES}
        link_counts = {s: sum(1 for x in out_links if x["state"] == s) for s in STATE_ORDER}
        return {"at": round(at, 3), "status": summary(status), "regions": out_regions,
                "links": out_links, "region_counts": counts, "link_counts": link_counts}


def summary(status: Mapping | None) -> dict:
    """What the page's header says of the controller's status."""
    if not status:
        return {}
    keys = ("controller", "relays", "regions", "route_version", "converged", "relays_acked",
            "links_up", "links_measured", "links_expected", "leader", "replica")
    return {k: status[k] for k in keys if k in status}


def same_state(a: Mapping | None, b: Mapping | None) -> bool:
    """Whether two states draw the same map (the time of the poll aside)."""
    if a is None or b is None:
        return a is b

    def strip(s):
        return json.dumps({k: v for k, v in s.items() if k != "at"}, sort_keys=True)
    return strip(a) == strip(b)


class EventFeed:
    """Which of the controller's events are new. The controller answers the events since a
    time on the relays' clocks, and a relay's report can arrive later than events after it:
    each poll asks again for the last `lookback_s` seconds and drops the events seen."""

    def __init__(self, lookback_s: float = 30.0, keep: int = 200,
                 history_s: float = 300.0) -> None:
        self.lookback_s, self.history_s = lookback_s, history_s
        self.recent: deque[dict] = deque(maxlen=keep)
        self.seen: dict[tuple, float] = {}
        self.newest = 0.0

    def since(self, now: float) -> float:
        """Where the next poll starts, on the events' clock (seconds since the epoch)."""
        if not self.newest:
            return now - self.history_s
        return min(self.newest, now) - self.lookback_s

    def take(self, events: Iterable[Mapping], now: float) -> list[dict]:
        """The events of this poll not seen before, oldest first."""
        new = []
        for e in sorted(events, key=lambda e: (e["at"], e.get("received", 0.0))):
            key = event_key(e)
            if key in self.seen:
                continue
            self.seen[key] = e["at"]
            e = {k: e[k] for k in ("at", "region", "kind", "peer", "detail", "routes")
                 if k in e}
            new.append(e)
            self.recent.append(e)
            self.newest = max(self.newest, e["at"])
        horizon = min(self.newest or now, now) - 2 * self.lookback_s
        for key in [k for k, at in self.seen.items() if at < horizon]:
            del self.seen[key]
        return new


@dataclass
class Drill:
    started_at: float
    targets: list[str]
    events: list[dict] = field(default_factory=list)
    recovered_at: float | None = None
    last_at: float = 0.0
    done: bool = False

    def mark(self, kind: str) -> float | None:
        at = [e["offset_ms"] for e in self.events if e["kind"] == kind]
        return min(at) if at else None

    def view(self) -> dict:
        return {"active": not self.done,
                "phase": "done" if self.done else
                "recovering" if self.recovered_at is not None else "failure",
                "started_at": round(self.started_at, 3), "targets": list(self.targets),
                "detect_ms": self.mark("link-down"), "reroute_ms": self.mark("reroute"),
                "unreachable_ms": self.mark("region-unreachable"),
                "recovered_ms": None if self.recovered_at is None
                else round((self.recovered_at - self.started_at) * 1000, 1),
                "restored_ms": self.mark("restore"),
                "events": list(self.events)}


class DrillTimeline:
    """A failure's timeline, as a drill (or `skymesh mesh kill`) makes one: it begins with a
    fault (a chaos that drops traffic, a relay gone, a region unreachable), takes every event
    after it as milliseconds from its start (links down, fast reroutes, the region found
    unreachable, the fault lifted, restores), and ends `settle_s` after the fault is lifted
    and nothing more happened. The last one stays shown until the next begins."""

    def __init__(self, settle_s: float = 10.0) -> None:
        self.settle_s = settle_s
        self.drill: Drill | None = None

    def take(self, events: Iterable[Mapping], now: float) -> bool:
        """Feed new events (oldest first) and the time; whether the timeline changed."""
        changed = False
        for e in events:
            d = self.drill
            if d is None or d.done:
                if not is_fault(e) or e["at"] < now - 60:
                    continue  # history from before the dashboard: no timeline of it
                self.drill = d = Drill(e["at"], [region_of(e)])
            elif is_fault(e) and region_of(e) not in d.targets and d.recovered_at is None:
                d.targets.append(region_of(e))
            if e["kind"] == "fabric-key":
                continue
            if len(d.events) < MAX_TIMELINE_EVENTS:
                d.events.append({"offset_ms": round((e["at"] - d.started_at) * 1000, 1),
                                 "at": e["at"], "region": e["region"], "kind": e["kind"],
                                 "peer": e["peer"], "detail": e["detail"]})
            d.last_at = max(d.last_at, e["at"])
            if is_recovery(e) and region_of(e) in d.targets:
                d.recovered_at = e["at"]
            elif is_fault(e) and region_of(e) in d.targets:
                d.recovered_at = None  # hit again (one target of several, say)
            changed = True
        d = self.drill
        if d is not None and not d.done and d.recovered_at is not None \
                and now - max(d.last_at, d.recovered_at) >= self.settle_s:
            d.done = True
            changed = True
        return changed

    def view(self) -> dict | None:
        return None if self.drill is None else self.drill.view()


def path_view(primary: Mapping, backup: Mapping | None,
              links: Mapping[tuple[str, str], KnownLink] | None = None) -> dict:
    """The page's path panel: the route (both ends included), its cost, and its backup: the
    next hop a relay switches to when the first fails, with the backup's own route from there
    (`backup`: the controller's path from the backup next hop) and what it costs."""
    out = {"src": primary["src"], "dst": primary["dst"], "zone": primary["zone"],
           "reachable": primary["reachable"], "path": list(primary.get("path", [])),
           "cost_ms": primary.get("cost_ms"), "version": primary.get("version"),
           "backup_next_hop": primary.get("backup_next_hop"),
           "backup_kind": primary.get("backup_kind", ""),
           "backup_path": None, "backup_cost_ms": None}
    if not primary["reachable"]:
        out["reason"] = primary.get("reason", "")
        out["path"], out["cost_ms"] = [], None
        return out
    hop = primary.get("backup_next_hop")
    if hop and backup is not None and backup.get("reachable") and backup.get("path"):
        rest = list(backup["path"])
        out["backup_path"] = [primary["src"], *rest] if rest[0] == hop else None
        first = (links or {}).get(link_key(primary["src"], hop))
        if out["backup_path"] and first is not None and first.cost_ms is not None:
            out["backup_cost_ms"] = round(first.cost_ms + float(backup["cost_ms"]), 1)
    elif hop == primary["dst"]:
        out["backup_path"] = [primary["src"], hop]
        first = (links or {}).get(link_key(primary["src"], hop))
        if first is not None and first.cost_ms is not None:
            out["backup_cost_ms"] = first.cost_ms
    return out
