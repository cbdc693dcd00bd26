"""The dashboard's core: the map's state from the controller's answers, new events, the
links a region takes away with it, a drill's timeline and the path panel."""

from __future__ import annotations

from skymesh.cli.dashview import (
    NO_CHAOS,
    DrillTimeline,
    EventFeed,
    MeshView,
    merge_links,
    path_view,
    same_state,
)


def region(rid, connected=True, drained=False, nodes=None, lat=0.0, lon=0.0):
    return {"id": rid, "name": rid.title(), "country": "DE", "lat": lat, "lon": lon,
            "connected": connected, "drained": drained, "edge_addr": "",
            "nodes": nodes if nodes is not None else []}


def link(src, dst, rtt=10.0, state="up", cost=None, loss=0.0):
    return {"src": src, "dst": dst, "rtt_ms": rtt, "state": state, "samples": 5,
            "cost_ms": rtt / 2 if cost is None else cost, "loss": loss, "jitter_ms": 0.1}


def event(at, region_, kind, peer="", detail=""):
    return {"at": at, "region": region_, "kind": kind, "peer": peer, "detail": detail,
            "routes": 0, "received": at + 0.01}


def test_a_link_is_its_two_directions_with_the_worse_state():
    merged = merge_links([link("a", "b", 10), link("b", "a", 12, state="degraded", loss=0.03),
                          link("a", "c", 30), link("a", "a", 0)])
    assert set(merged) == {("a", "b"), ("a", "c")}
    ab = merged[("a", "b")]
    assert (ab.state, ab.rtt_ms, ab.cost_ms, ab.loss) == ("degraded", 11.0, 5.5, 0.03)
    # a direction that is down measures no RTT
    down = merge_links([link("c", "a", 99, state="down"), link("a", "c", 30)])[("a", "c")]
    assert (down.state, down.rtt_ms) == ("down", 30.0)


def test_region_states_relays_and_counts():
    view = MeshView()
    nodes = [{"node_id": "n1", "sessions": 3}, {"node_id": "n2", "sessions": 4}]
    s = view.update([region("a", nodes=nodes), region("b", drained=True),
                     region("c", connected=False)],
                    [link("a", "b")], {"relays": 3, "route_version": 7, "secret": 1}, at=5.0)
    by = {r["id"]: r for r in s["regions"]}
    assert by["a"]["state"] == "connected" and by["a"]["relays"] == 2
    assert by["a"]["sessions"] == 7
    assert by["b"]["state"] == "drained" and by["b"]["relays"] == 1
    assert by["c"]["state"] == "unreachable" and by["c"]["relays"] == 0
    assert by["c"]["reason"] == "no relay connected"
    assert s["region_counts"] == {"connected": 1, "drained": 1, "unreachable": 1}
    assert s["status"] == {"relays": 3, "route_version": 7}
    assert s["at"] == 5.0


def test_unreachable_regions_come_from_the_controllers_events():
    view = MeshView()
    view.note_events([event(1, "controller", "region-unreachable", "b", "links to it down")])
    s = view.update([region("a"), region("b", drained=True)], [])
    b = next(r for r in s["regions"] if r["id"] == "b")
    assert b["state"] == "unreachable" and b["drained"] and "several relays" in b["reason"]
    view.note_events([event(2, "controller", "region-reachable", "b")])
    s = view.update([region("a"), region("b", drained=True)], [])
    assert next(r for r in s["regions"] if r["id"] == "b")["state"] == "drained"


def test_a_region_taken_away_leaves_its_links_down_on_the_map():
    view = MeshView()
    regions = [region("a"), region("b"), region("c")]
    view.update(regions, [link("a", "b"), link("b", "a"), link("a", "c"), link("b", "c")])
    # c's relay is gone: the controller forgets its links
    regions[2]["connected"] = False
    s = view.update(regions, [link("a", "b"), link("b", "a")])
    links = {(x["a"], x["b"]): x for x in s["links"]}
    assert links[("a", "b")]["state"] == "up" and links[("a", "b")]["listed"]
    assert links[("a", "c")]["state"] == "down" and not links[("a", "c")]["listed"]
    assert links[("a", "c")]["rtt_ms"] == 10.0  # the last measured, for the tooltip
    assert s["link_counts"]["down"] == 2
    # still listed for a moment, but its far end is gone: down all the same
    s = view.update(regions, [link("a", "b"), link("a", "c")])
    assert {(x["a"], x["b"]): x["state"] for x in s["links"]}[("a", "c")] == "down"
    # back: measured again
    regions[2]["connected"] = True
    s = view.update(regions, [link("a", "b"), link("a", "c"), link("b", "c")])
    assert all(x["state"] == "up" for x in s["links"])
    # a region that leaves the catalogue takes its links off the map
    s = view.update(regions[:2], [link("a", "b")])
    assert [(x["a"], x["b"]) for x in s["links"]] == [("a", "b")]


def test_same_state_ignores_the_time_of_the_poll():
    view = MeshView()
    a = view.update([region("a")], [], at=1.0)
    b = view.update([region("a")], [], at=2.0)
    assert same_state(a, b)
    c = view.update([region("a", drained=True)], [], at=3.0)
    assert not same_state(b, c)
    assert same_state(None, None) and not same_state(None, a)


def test_the_feed_takes_each_event_once_late_ones_too():
    feed = EventFeed(lookback_s=30, keep=3)
    assert feed.since(1000.0) == 700.0  # the first poll shows the last five minutes
    first = feed.take([event(990, "a", "link-down", "b"), event(980, "a", "chaos")], 1000.0)
    assert [e["at"] for e in first] == [980, 990]  # oldest first
    assert "received" not in first[0]
    assert feed.since(1001.0) == 960.0  # asks again for the last 30 s
    again = feed.take([event(980, "a", "chaos"), event(990, "a", "link-down", "b"),
                       event(985, "b", "reroute", "c"),  # reported late
                       event(1000.5, "a", "link-up", "b")], 1001.0)
    assert [e["kind"] for e in again] == ["reroute", "link-up"]
    assert [e["kind"] for e in feed.recent] == ["link-down", "reroute", "link-up"]  # keep=3
    # what is past the lookback is forgotten, bounded
    feed.take([], 2000.0)
    assert all(at >= 1000.5 - 60 for at in feed.seen.values())


def test_a_drill_timeline_from_its_events():
    tl = DrillTimeline(settle_s=5)
    assert not tl.take([event(50, "controller", "relay-connected", "a")], 100.0)
    assert tl.view() is None
    # history from long before: no timeline of it
    assert not tl.take([event(10, "controller", "chaos", "b", "dropping traffic with every peer")],
                       100.0)
    start = 100.0
    changed = tl.take([
        event(start, "controller", "chaos", "b", "dropping traffic with every peer"),
        event(start + 0.05, "b", "chaos", "", "dropping traffic with every peer"),
        event(start + 0.3, "a", "link-down", "b", "3 probes missed"),
        event(start + 0.32, "a", "reroute", "b", "2 routes"),
        event(start + 0.4, "c", "link-down", "b")], start + 0.5)
    assert changed
    v = tl.view()
    assert v["active"] and v["phase"] == "failure" and v["targets"] == ["b"]
    assert (v["detect_ms"], v["reroute_ms"]) == (300.0, 320.0)
    assert [e["kind"] for e in v["events"]][:2] == ["chaos", "chaos"]
    tl.take([event(start + 6, "controller", "chaos", "b", NO_CHAOS),
             event(start + 6.5, "a", "restore", "b")], start + 7)
    v = tl.view()
    assert v["phase"] == "recovering" and v["recovered_ms"] == 6000.0
    assert v["restored_ms"] == 6500.0
    assert not tl.take([], start + 10)  # not yet settled: 5 s after the last event
    assert tl.take([], start + 11.6)
    assert tl.view()["phase"] == "done" and not tl.view()["active"]
    # the next fault begins a new one
    tl.take([event(start + 20, "controller", "relay-disconnected", "c", "n1")], start + 20)
    assert tl.view()["targets"] == ["c"] and tl.view()["events"][0]["offset_ms"] == 0


def test_a_partition_has_both_ends_as_targets():
    tl = DrillTimeline()
    tl.take([event(100, "controller", "chaos", "a", "dropping traffic with b"),
             event(100.01, "controller", "chaos", "b", "dropping traffic with a")], 100.1)
    assert tl.view()["targets"] == ["a", "b"]


def test_the_path_panel_with_its_backup():
    links = merge_links([link("a", "c", 20, cost=10.0)])
    primary = {"src": "a", "dst": "d", "zone": "global", "reachable": True,
               "path": ["a", "b", "d"], "cost_ms": 30.0, "backup_next_hop": "c",
               "backup_kind": "node", "version": 4}
    backup = {"src": "c", "dst": "d", "zone": "global", "reachable": True, "path": ["c", "d"],
              "cost_ms": 25.0}
    v = path_view(primary, backup, links)
    assert v["path"] == ["a", "b", "d"] and v["cost_ms"] == 30.0
    assert v["backup_path"] == ["a", "c", "d"] and v["backup_cost_ms"] == 35.0
    # the backup next hop is the destination itself: the direct link
    direct = path_view({**primary, "backup_next_hop": "d"}, None,
                       merge_links([link("a", "d", 90)]))
    assert direct["backup_path"] == ["a", "d"] and direct["backup_cost_ms"] == 45.0
    none = path_view({**primary, "backup_next_hop": None}, None, links)
    assert none["backup_path"] is None
    lost = path_view({**primary, "reachable": False, "reason": "d is not in zone eu"}, None)
    assert not lost["reachable"] and lost["path"] == [] and lost["reason"]
