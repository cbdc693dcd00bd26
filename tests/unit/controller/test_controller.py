"""The controller's recompute and push, driven as its gRPC shell drives it (hellos, link
reports, acks), without sockets: ordered repair after a region stops answering."""

from __future__ import annotations

import asyncio

from controller.service import Controller, Settings
from skymesh.catalogue import Region
from skymesh.linkstate import DOWN, TO_WIRE, UP
from skymesh.policy import Policy, Zone
from skymesh.v1 import relay_pb2

# one-way costs are rtt/2 + 0.5: x is the cheap way between everyone
RTT = {("a", "x"): 20, ("b", "x"): 20, ("d", "x"): 20, ("a", "b"): 60, ("b", "d"): 60,
       ("a", "d"): 200}
REGIONS = ("a", "b", "d", "x")


def controller(settings: Settings | None = None) -> Controller:
    """A controller every region's relay has connected to and reported every link up to."""
    catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                 for r in REGIONS}
    policy = Policy({"global": Zone("global", frozenset(REGIONS))})
    c = Controller(catalogue, policy, settings or Settings())
    for r in REGIONS:
        c.connect(relay_pb2.Hello(region=r, node_id=f"{r}-1", probe_addr="127.0.0.1:1"))
    for r in REGIONS:
        report(c, r)
    return c


def rtt(a: str, b: str) -> float:
    return RTT.get((a, b)) or RTT[(b, a)]


def report(c: Controller, region: str, down: frozenset[str] = frozenset()) -> None:
    links = [relay_pb2.LinkSample(dst=p, rtt_ms=rtt(region, p), min_rtt_ms=rtt(region, p),
                                  samples=10, state=TO_WIRE[DOWN if p in down else UP])
             for p in REGIONS if p != region]
    c.on_report(c.sessions[region], relay_pb2.LinkReport(links=links))


def tables(c: Controller) -> dict[str, relay_pb2.RouteTable]:
    """The route tables pushed since the last look, by region."""
    out = {}
    for region, session in c.sessions.items():
        while not session.queue.empty():
            msg = session.queue.get_nowait()
            if msg is not None and msg.HasField("routes"):
                out[region] = msg.routes
    return out


def ack(c: Controller, region: str, table: relay_pb2.RouteTable) -> None:
    c.on_ack(c.sessions[region], relay_pb2.RouteAck(version=table.version, accepted=True))


def ack_all(c: Controller, pushed: dict[str, relay_pb2.RouteTable]) -> None:
    for region, table in pushed.items():
        ack(c, region, table)


def x_goes_dark(c: Controller) -> None:
    """a and b, with traffic through x, find it down first."""
    report(c, "a", down=frozenset({"x"}))
    report(c, "b", down=frozenset({"x"}))


def hop(table: relay_pb2.RouteTable, dst: str) -> str:
    return next(r.next_hop for r in table.routes if r.dst == dst)


def test_repair_after_a_region_goes_dark_installs_leaves_first():
    async def main():
        c = controller()
        assert c.recompute()
        first = tables(c)
        assert hop(first["a"], "d") == "x" and hop(first["b"], "d") == "x"
        ack_all(c, first)
        assert c.converged()

        x_goes_dark(c)
        assert c.unreachable == frozenset()
        c.recompute()
        assert c.unreachable == {"x"}
        repair = tables(c)
        # b's new row goes straight to d; a's would go to b, whose installed row still
        # leads into x: a keeps its row until b has acknowledged
        assert hop(repair["b"], "d") == "d"
        assert "a" not in repair or hop(repair["a"], "d") == "x"
        assert c.sessions["a"].held >= 1 and not c.converged()
        assert "b" in c.awaited
        ack(c, "b", repair["b"])
        assert c.wake.is_set()  # the ack starts the next round at once
        c.recompute()
        second = tables(c)
        assert hop(second["a"], "d") == "b"
        assert c.sessions["a"].held == 0
        assert any(e.event.kind == "region-unreachable" and e.event.peer == "x"
                   for e in c.events)

    asyncio.run(main())


def pushed_at_the_hold_limit() -> Controller:
    """x goes dark with no hold: a's repaired row to d (via b) goes out without b's ack."""
    c = controller(Settings(order_hold_s=0.0))
    c.recompute()
    ack_all(c, tables(c))
    x_goes_dark(c)
    c.recompute()
    assert hop(tables(c)["a"], "d") == "b"  # no waiting for b's ack
    return c


def test_rows_held_too_long_go_out_anyway():
    async def main():
        c = pushed_at_the_hold_limit()
        assert c.sessions["a"].held == 0

    asyncio.run(main())


def test_an_ack_for_a_version_already_followed_by_another_still_counts():
    """Under churn a relay's ack often arrives after the next push: what it acknowledged is
    installed all the same (else rows waiting on it would wait for the hold limit)."""
    async def main():
        c = controller()
        c.recompute()
        first = tables(c)["b"]
        session = c.sessions["b"]
        c.version += 1
        c.push(session, c.tables["b"])  # a newer version goes out before the ack
        ack(c, "b", first)
        assert session.installed == {(r.zone, r.dst): r for r in c.tables["b"]}
        assert set(session.unacked) == {c.version}
        assert session.acked_version == first.version

    asyncio.run(main())


def test_rows_pushed_at_the_hold_limit_are_not_taken_back_before_they_are_acknowledged():
    async def main():
        c = pushed_at_the_hold_limit()
        c.settings = Settings(order_hold_s=60.0)  # b has still not acknowledged
        c.dirty = True
        c.recompute()
        assert "a" not in tables(c)  # nothing new for a: its row to b stands

    asyncio.run(main())
