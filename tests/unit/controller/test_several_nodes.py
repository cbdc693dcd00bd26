"""Several relay nodes in one region (controller/core.py): the first leads (its reports route
the region), the others follow; every node gets its region's tables, config and members;
peers hear of every node; a lead that leaves hands over to the next node."""

from __future__ import annotations

from controller.core import Chaos, Hello, Peers, RelayConfig
from controller.distribution import Push
from controller.membership import Members
from skymesh.linkstate import PROTOCOL_BY_CHANGE
from tests.unit.controller.test_controller import (
    REGIONS,
    ack_all,
    converged_rig,
    report,
    tables,
)

CH = ("global", "ch")


def sibling(r, region: str = "a", node: str = "2", protocol: int = PROTOCOL_BY_CHANGE):
    """Node `node` of `region` joins a converged mesh; its messages go to outbox["a/2"]."""
    box = r.outbox[f"{region}/{node}"] = []
    return r.c.connect(Hello(region, f"{region}-{node}", f"127.0.0.2:{node}", protocol=protocol),
                       box.append, r.now, r.unix)


def pushes(box: list) -> list[Push]:
    return [m for m in box if isinstance(m, Push)]


def test_a_second_node_follows_and_gets_its_regions_table_config_and_peers():
    r = converged_rig()
    lead = r.c.sessions["a"]
    follower = sibling(r)
    assert r.c.sessions["a"] is lead  # the first node keeps leading
    assert [s.relay.node_id for s in r.c.region_sessions("a")] == ["a-1", "a-2"]
    got = r.take("a/2")
    peers = [m for m in got if isinstance(m, Peers)]
    assert len(peers) == 1 and not peers[0].incremental
    # every node but itself, its sibling a-1 included
    assert [(p[0], p[2]) for p in peers[0].peers] == [
        ("a", "a-1"), ("b", "b-1"), ("d", "d-1"), ("x", "x-1")]
    assert any(isinstance(m, RelayConfig) and m.zones == ("global",) for m in got)
    [table] = pushes(got)
    assert table.version == lead.routes.pushed_version
    assert table.rows == tuple(lead.routes.sent.values())
    r.c.on_ack(follower, table.version, accepted=True)
    assert follower.routes.acked_version == table.version
    # its region's routes are the lead's, and routes stay per region
    assert "a" in r.c.distribution.relays and r.c.distribution.relays["a"] is lead.routes


def test_every_push_to_a_region_reaches_all_its_nodes_at_one_version():
    r = converged_rig()
    sibling(r)
    r.take("a/2")
    r.c.drain("x", True, r.now, r.unix)  # a's routes through x move
    lead_pushes, follower_pushes = pushes(r.take("a")), pushes(r.take("a/2"))
    assert lead_pushes and [p.version for p in follower_pushes] == [
        p.version for p in lead_pushes]
    assert follower_pushes[-1].rows == lead_pushes[-1].rows


def test_a_followers_reports_do_not_route_the_region():
    r = converged_rig()
    follower = sibling(r)
    before = r.c.topology.links[("a", "b")].rtt_ms
    r.c.on_report(follower, [{"dst": "b", "rtt_ms": 500.0, "min_rtt_ms": 500.0,
                              "jitter_ms": 0.0, "loss": 0.0, "window": 0, "samples": 10,
                              "lost": 0, "state": 1}], {"x": 1}, r.now)
    assert r.c.topology.links[("a", "b")].rtt_ms == before
    assert follower.counters == {"x": 1}  # its own counters are kept


def test_the_lead_leaving_hands_the_region_to_the_next_node():
    r = converged_rig()
    follower = sibling(r)
    r.take("a/2")
    lead = r.c.sessions["a"]
    r.c.disconnect(lead, r.now, r.unix)
    assert r.c.sessions["a"] is follower
    assert r.c.topology.relays["a"].node_id == "a-2"
    assert ("a", "b") in r.c.topology.links  # the region's links stay
    assert r.c.all_measured()
    r.advance(0.5)
    r.c.tick(r.now, r.unix)
    # the new lead is pushed at a new version, as a relay new to the distribution
    [table] = pushes(r.take("a/2"))
    assert table.version > lead.routes.pushed_version
    r.c.on_ack(follower, table.version, accepted=True)
    assert r.c.distribution.relays["a"].acked_version == table.version
    # it speaks for the region from now on
    report(r, "a")
    kinds = [(e.event.kind, e.event.peer) for e in r.c.events]
    assert ("lead", "a") in kinds and ("relay-disconnected", "a") in kinds
    # the last node leaving takes the region out
    r.c.disconnect(follower, r.now, r.unix)
    assert "a" not in r.c.sessions and "a" not in r.c.topology.relays
    assert "a" not in r.c.nodes


def test_peers_of_protocol_2_hear_of_a_node_coming_and_going():
    r = converged_rig()
    others = {}
    for region in REGIONS:  # b, d and x again, speaking protocol 2
        if region != "a":
            others[region] = sibling(r, region, "1")
    r.c.tick(r.now, r.unix)  # their reconnects are told
    for box in r.outbox.values():
        box.clear()
    node = sibling(r)
    r.c.tick(r.now, r.unix)
    added = [m for m in r.take("b/1") if isinstance(m, Peers)]
    assert [m.peers for m in added] == [(("a", "127.0.0.2:2", "a-2"),)]
    assert added[0].incremental
    r.c.disconnect(node, r.now, r.unix)  # told at once: transit into a moves to a-1 now
    gone = [m for m in r.take("b/1") if isinstance(m, Peers)]
    assert [m.removed for m in gone] == [("a/a-2",)]  # a node, not the region


def test_members_are_the_subscribed_nodes_of_every_region():
    r = converged_rig()
    sibling(r, "b")
    c = r.c
    c.on_channels(c.sessions["d"], {CH: (False, True)}, r.now + 100)
    c.on_channels(c.sessions["b"], {CH: (True, False)}, r.now + 100)
    c.on_channels(c.nodes["b"]["b-2"], {CH: (True, False)}, r.now + 100)
    told = [m for m in r.take("d") if isinstance(m, Members)]
    assert told[-1] == Members("d/d-1", "global", "ch", ("b/b-1", "b/b-2"))
    assert c.members_of(CH) == ("b/b-1", "b/b-2")
    [view] = c.channels()
    assert (view.subscriber_regions, view.subscriber_nodes) == (["b"], ["b/b-1", "b/b-2"])
    # a publisher on a follower is told as well
    c.on_channels(c.nodes["b"]["b-2"], {CH: (True, True)}, r.now + 100)
    assert [m.regions for m in r.take("b/2") if isinstance(m, Members)] == [
        ("b/b-1", "b/b-2")]
    c.disconnect(c.nodes["b"]["b-2"], r.now + 100, r.unix)
    told = [m for m in r.take("d") if isinstance(m, Members)]
    assert told[-1].regions == ("b/b-1",)  # the other node keeps its name


def test_a_drain_and_chaos_reach_every_node_of_the_region():
    r = converged_rig()
    sibling(r)
    r.take("a/2")
    r.c.drain("a", True, r.now, r.unix)
    assert any(isinstance(m, RelayConfig) and m.drained for m in r.take("a/2"))
    ack_all(r, tables(r))
    r.c.chaos("a", Chaos(drop_peers=("b",)), r.unix)
    assert Chaos(drop_peers=("b",)) in r.take("a/2")


def test_a_regions_nodes_are_weighted_for_transit_by_the_sessions_they_hold():
    """Every transit_weights_every_s the nodes of a region are weighed by their client
    sessions; peers of protocol 2 hear of the nodes whose weight moved, with it, and a new
    node's whole list carries the weights; nothing is sent while no weight moves."""
    r = converged_rig()
    others = {region: sibling(r, region, "1") for region in REGIONS if region != "a"}
    follower = sibling(r)
    r.c.tick(r.now, r.unix)
    for box in r.outbox.values():
        box.clear()
    lead = r.c.sessions["a"]

    def weights_heard(box: str) -> list[Peers]:
        return [m for m in r.take(box) if isinstance(m, Peers) and m.weights]

    r.c.on_report(lead, [], {"edge.sessions": 400}, r.now)
    r.c.on_report(follower, [], {"edge.sessions": 100}, r.now)
    r.advance(r.c.settings.transit_weights_every_s)
    r.c.tick(r.now, r.unix)
    [heard] = weights_heard("b/1")
    assert heard.incremental and heard.peers == (("a", "127.0.0.1:1", "a-1"),)
    assert heard.weights == {"a/a-1": 0.25}
    assert not weights_heard("a/2")  # siblings take no transit from each other
    # the same load again: nothing moved, nothing sent
    r.advance(r.c.settings.transit_weights_every_s)
    r.c.tick(r.now, r.unix)
    assert not [m for m in r.take("b/1") if isinstance(m, Peers)]
    # a relay connecting anew gets the weights in its whole list
    newcomer = sibling(r, "d", "2")
    [whole] = [m for m in r.take("d/2") if isinstance(m, Peers)]
    assert not whole.incremental and whole.weights == {"a/a-1": 0.25}
    # the load evens out: a-1 is listed again at weight 1 (no weight: the relay's default)
    r.c.on_report(lead, [], {"edge.sessions": 100}, r.now)
    r.advance(r.c.settings.transit_weights_every_s)
    r.c.tick(r.now, r.unix)
    back = [m for m in r.take("b/1") if isinstance(m, Peers) and m.peers[0][0] == "a"]
    assert [(m.peers, m.weights) for m in back] == [((("a", "127.0.0.1:1", "a-1"),), {})]
    assert others and newcomer
