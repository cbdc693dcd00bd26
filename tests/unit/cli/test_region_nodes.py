"""A region's relay nodes as clients and operators see them: the SDK's edge lookup (sdk/resolve.py)
ordered by load with the region's edge as fallback, the CLI's connect that moves on to a
sibling's edge (skymesh/cli/traffic.py), and `admin regions` with its nodes."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from sdk.errors import ConnectionClosed, EdgeUnavailable, TokenRefused
from sdk.resolve import Edge, edges_of
from skymesh.cli import admin, traffic
from skymesh.cli.render import render
from skymesh.v1 import admin_pb2


def reply(**regions: dict) -> admin_pb2.RegionsReply:
    out = admin_pb2.RegionsReply()
    for rid, fields in regions.items():
        r = out.regions.add(id=rid, name=rid.upper(), country="DE", lat=50.1, lon=8.7,
                            connected=bool(fields.get("nodes") or fields.get("edge_addr")))
        r.edge_addr = fields.get("edge_addr", "")
        r.probe_addr = fields.get("probe_addr", "")
        r.drained = fields.get("drained", False)
        for n in fields.get("nodes", []):
            r.nodes.add(**n)
    return out


THREE = reply(fra={"edge_addr": "127.1.0.1:4001", "probe_addr": "127.1.0.1:5001", "nodes": [
    {"node_id": "n1", "edge_addr": "127.1.0.1:4001", "probe_addr": "127.1.0.1:5001",
     "lead": True, "sessions": 7, "route_version": 3, "transit_weight": 0.25},
    {"node_id": "n3", "edge_addr": "127.1.0.3:4003", "sessions": 2, "route_version": 3},
    {"node_id": "n2", "edge_addr": "127.1.0.2:4002", "sessions": 2, "route_version": 2}]},
    lon={"edge_addr": "127.1.0.9:4009"})


def test_edges_fewest_sessions_first_then_by_node_id():
    edges = edges_of(THREE, "fra", "ca.pem")
    assert [(e.node, e.host, e.port) for e in edges] == [
        ("n2", "127.1.0.2", 4002), ("n3", "127.1.0.3", 4003), ("n1", "127.1.0.1", 4001)]
    assert all(e.region == "fra" and e.ca == "ca.pem" for e in edges)


def test_edges_of_a_controller_that_lists_no_nodes_is_the_regions_edge():
    assert edges_of(THREE, "lon") == [Edge("lon", "127.1.0.9", 4009)]
    assert edges_of(reply(v6={"edge_addr": "[::1]:4433"}), "v6")[0].host == "::1"


def test_nodes_without_an_edge_are_not_offered():
    r = reply(fra={"edge_addr": "127.1.0.1:4001", "nodes": [
        {"node_id": "n1", "edge_addr": "127.1.0.1:4001", "lead": True, "sessions": 5},
        {"node_id": "n2", "sessions": 0}]})
    assert [e.node for e in edges_of(r, "fra")] == ["n1"]
    with pytest.raises(EdgeUnavailable, match="no relay with a client edge"):
        edges_of(reply(fra={"nodes": [{"node_id": "n1", "lead": True}]}), "fra")


def test_unknown_unconnected_and_drained_regions_have_no_edge():
    with pytest.raises(EdgeUnavailable, match="unknown region"):
        edges_of(THREE, "nyc")
    with pytest.raises(EdgeUnavailable, match="no relay"):
        edges_of(reply(fra={}), "fra")
    drained = reply(fra={"drained": True, "nodes": [
        {"node_id": "n1", "edge_addr": "127.1.0.1:4001", "lead": True}]},
        lon={"nodes": [{"node_id": "n1", "edge_addr": "127.1.0.9:4009", "lead": True}]})
    with pytest.raises(EdgeUnavailable, match="drained; regions in service: lon"):
        edges_of(drained, "fra")


# -- the CLI's connect, with sibling edges --------------------------------------------------

class FakeSession:
    def __init__(self, port: int) -> None:
        self.port = port


@pytest.fixture
def edges_behaving(monkeypatch: pytest.MonkeyPatch):
    """Edges by port: "refuse" (the connection fails), "silent" (no handshake), "token" (a
    refusal no other node would lift), "ok"; what was tried, and what is still open."""
    behaviour: dict[int, str] = {}
    tried: list[int] = []
    open_: set[int] = set()

    @asynccontextmanager
    async def connect(host, port, token, channel, ca, e2ee_key=None):
        tried.append(port)
        what = behaviour[port]
        if what == "refuse":
            raise ConnectionClosed(0, f"cannot connect to {host}:{port}")
        if what == "silent":
            await asyncio.sleep(60)
        if what == "token":
            raise TokenRefused("expired", 0x101, "expired")
        open_.add(port)
        try:
            yield FakeSession(port)
        finally:
            open_.discard(port)

    monkeypatch.setattr(traffic, "connect", connect)
    return behaviour, tried, open_


def edge(port: int, node: str) -> Edge:
    return Edge("fra", "127.0.0.1", port, "ca.pem", node)


def test_connect_moves_on_to_the_next_node_when_an_edge_fails(edges_behaving):
    behaviour, tried, open_ = edges_behaving
    behaviour.update({1: "refuse", 2: "silent", 3: "ok", 4: "ok"})
    said: list[str] = []

    async def main():
        async with AsyncExitStack() as stack:
            session, used = await traffic.connect_edges(
                stack, [edge(1, "n1"), edge(2, "n2"), edge(3, "n3"), edge(4, "n4")], "tok",
                "ch", handshake_timeout=0.05, say=said.append)
            assert open_ == {3}
            return session, used

    session, used = asyncio.run(main())
    assert (session.port, used.node) == (3, "n3") and tried == [1, 2, 3]
    assert not open_  # closed with the stack
    assert len(said) == 2 and "fra/n1" in said[0] and "no handshake" in said[1]


def test_connect_fails_when_no_edge_answers(edges_behaving):
    behaviour, tried, _ = edges_behaving
    behaviour.update({1: "refuse", 2: "silent"})

    async def main():
        async with AsyncExitStack() as stack:
            await traffic.connect_edges(stack, [edge(1, "n1"), edge(2, "n2")], "tok", "ch",
                                        handshake_timeout=0.05)

    with pytest.raises(ConnectionClosed, match="no edge answered: fra/n1 .*; fra/n2"):
        asyncio.run(main())
    assert tried == [1, 2]


def test_a_refused_token_is_not_retried_at_a_sibling(edges_behaving):
    behaviour, tried, _ = edges_behaving
    behaviour.update({1: "token", 2: "ok"})

    async def main():
        async with AsyncExitStack() as stack:
            await traffic.connect_edges(stack, [edge(1, "n1"), edge(2, "n2")], "tok", "ch")

    with pytest.raises(TokenRefused):
        asyncio.run(main())
    assert tried == [1]


# -- admin regions ---------------------------------------------------------------------------

def test_admin_regions_lists_nodes_lead_first():
    data = admin.regions_of(THREE)
    fra = data[0]
    assert [n["node_id"] for n in fra["nodes"]] == ["n1", "n3", "n2"]
    assert fra["nodes"][0] == {"node_id": "n1", "probe_addr": "127.1.0.1:5001",
                               "edge_addr": "127.1.0.1:4001", "metrics_addr": "",
                               "health_addr": "",
                               "route_version": 3, "lead": True, "sessions": 7,
                               "transit_weight": 0.25, "replica": "", "counters": {}}
    # from an older controller (0 on the wire): the whole share
    assert fra["nodes"][1]["transit_weight"] == 1.0
    assert data[1]["nodes"] == []


def test_regions_table_shows_nodes_with_the_lead_starred():
    text = render("regions", admin.regions_of(THREE))
    head, fra, lon, note = text.splitlines()
    assert "NODES" in head.split()
    assert "n1*(7 x0.25), n3(2), n2(2)" in fra
    assert lon.split()[-2:] == ["-", "-"]  # no nodes listed, not drained
    assert note.startswith("NODES:")


def test_regions_table_of_a_controller_without_nodes_has_no_note():
    text = render("regions", admin.regions_of(reply(lon={"edge_addr": "127.1.0.9:4009"})))
    assert len(text.splitlines()) == 2
