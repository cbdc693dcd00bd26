"""The gRPC shells (controller/relay_service.py, controller/admin_service.py) called as the
server calls them, without a server: status codes and reasons, a relay session's stream.
(tests/integration/ runs them on real servers.)"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest

from controller.admin_service import AdminService
from controller.core import Controller
from controller.relay_service import RelayControlService, check_hello
from controller.store import FileStore
from skymesh.catalogue import Region
from skymesh.policy import Policy, Zone
from skymesh.v1 import admin_pb2, relay_pb2

REGIONS = ("aa", "bb")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def core(store=None) -> Controller:
    catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                 for r in REGIONS}
    policy = Policy({"global": Zone("global", frozenset(REGIONS))})
    return Controller(catalogue, policy, store=store, now=0.0)


def call(method, request):
    return asyncio.run(method(request, Context()))


def refused(method, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(Aborted) as e:
        call(method, request)
    return e.value.code, e.value.details


def test_admin_refusals_keep_their_status_codes_and_reasons(tmp_path: Path):
    admin = AdminService(core(), None)
    assert refused(admin.Routes, admin_pb2.RoutesRequest(region="zz")) == (
        grpc.StatusCode.NOT_FOUND, "unknown region 'zz': not in the catalogue")
    assert refused(admin.Path, admin_pb2.PathRequest(src="aa", dst="bb", zone="eu")) == (
        grpc.StatusCode.NOT_FOUND, "unknown zone 'eu' (zones: global)")
    assert refused(admin.PlanFailover, admin_pb2.FailoverRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "name a region, or both ends of a link")
    assert refused(admin.PlanFailover, admin_pb2.FailoverRequest(region="aa")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "aa has no relay in the topology")
    assert refused(admin.Chaos, admin_pb2.ChaosRequest(region="aa")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "region 'aa' has no relay connected")
    assert refused(admin.Drain, admin_pb2.DrainRequest(region="zz", drained=True)) == (
        grpc.StatusCode.NOT_FOUND, "unknown region 'zz': not in the catalogue")


def test_a_drain_that_cannot_be_kept_is_unavailable_and_names_the_file(tmp_path: Path):
    path = tmp_path / "gone" / "state.json"
    path.parent.mkdir()
    ctl = core(FileStore(path))  # it keeps its fabric keys there at the start
    shutil.rmtree(path.parent)  # then the disk goes away
    code, details = refused(AdminService(ctl, None).Drain,
                            admin_pb2.DrainRequest(region="aa", drained=True))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith(f"could not keep the change in {path}: ")
    assert ctl.drained == set()


def test_admin_replies_carry_the_cores_answers(tmp_path: Path):
    ctl = core(FileStore(tmp_path / "state.json"))
    admin = AdminService(ctl, None)
    reply = call(admin.Drain, admin_pb2.DrainRequest(region="bb", drained=True))
    assert list(reply.drained_regions) == ["bb"] and reply.drained
    status = call(admin.Status, admin_pb2.StatusRequest())
    assert (status.relays, status.regions, status.converged) == (0, 2, False)
    regions = call(admin.Regions, admin_pb2.RegionsRequest()).regions
    assert [(r.id, r.connected, r.drained) for r in regions] == [
        ("aa", False, False), ("bb", False, True)]
    path = call(admin.Path, admin_pb2.PathRequest(src="aa", dst="bb"))
    assert not path.reachable and path.zone == "global" and path.backup_kind == "none"
    assert path.reason == "aa has no relay in the topology"
    events = call(admin.Events, admin_pb2.EventsRequest()).events
    assert [(e.region, e.event.kind, e.event.peer) for e in events] == [
        ("controller", "drain", "bb")]


def test_a_hello_is_checked_before_the_session_starts():
    def hello(**kw) -> relay_pb2.RelayMessage:
        fields = {"region": "aa", "node_id": "n", "probe_addr": "127.0.0.1:9"} | kw
        return relay_pb2.RelayMessage(hello=relay_pb2.Hello(**fields))

    catalogue = dict.fromkeys(REGIONS)
    assert check_hello(hello(), catalogue) is None
    assert check_hello(relay_pb2.RelayMessage(ack=relay_pb2.RouteAck()), catalogue) == (
        grpc.StatusCode.INVALID_ARGUMENT, "the first message of a session must be a hello")
    assert check_hello(hello(region="zz"), catalogue) == (
        grpc.StatusCode.NOT_FOUND, "unknown region 'zz': not in the catalogue")
    assert check_hello(hello(probe_addr="nohost"), catalogue)[1] == (
        "probe_addr 'nohost' is not host:port (port 1-65535)")
    assert check_hello(hello(edge_addr="x y:1"), catalogue)[1] == (
        "edge_addr 'x y:1' is not host:port (port 1-65535)")
    # a port no socket can use would reach every peer's probe loop (OverflowError in sendto)
    assert check_hello(hello(probe_addr="[::1]:70000"), catalogue)[1] == (
        "probe_addr '[::1]:70000' is not host:port (port 1-65535)")
    assert check_hello(hello(edge_addr="127.0.0.1:0"), catalogue)[1] == (
        "edge_addr '127.0.0.1:0' is not host:port (port 1-65535)")
    assert check_hello(hello(probe_addr="[::1]:65535", route_version=2**63), catalogue) is None
    # versions go on above the one a relay holds: 2**64-1 would overflow the next push's uint64
    assert check_hello(hello(route_version=2**64 - 1), catalogue)[1] == (
        f"route_version {2**64 - 1} is beyond any version pushed (at most {2**63})")
    assert check_hello(hello(region="z" * 1000), catalogue)[1] == (
        f"unknown region {'z' * 64!r}: not in the catalogue")


def test_a_relay_session_streams_the_cores_messages_and_ends_with_the_relays_stream():
    ctl = core()

    async def requests():
        yield relay_pb2.RelayMessage(hello=relay_pb2.Hello(
            region="aa", node_id="aa-1", probe_addr="127.0.0.1:9", route_version=3))
        yield relay_pb2.RelayMessage(channels=relay_pb2.Channels(channels=[
            relay_pb2.ChannelInterest(zone="global", channel="c", subscribers=True)]))

    async def session() -> list[relay_pb2.ControllerMessage]:
        stream = RelayControlService(ctl, None).Session(requests(), Context())
        # the service sends messages encoded (controller/relay_service.py add_to_server)
        return [relay_pb2.ControllerMessage.FromString(msg) async for msg in stream]

    got = asyncio.run(session())
    assert [m.WhichOneof("msg") for m in got] == ["peers", "config"]
    assert list(got[1].config.zones) == ["global"]
    assert ctl.sessions == {}  # the relay's stream ended: disconnected
    assert ctl.version == 3
    assert [e.event.kind for e in ctl.events] == ["relay-connected", "relay-disconnected"]


def test_a_session_that_does_not_start_with_a_hello_is_refused():
    async def requests():
        yield relay_pb2.RelayMessage(ack=relay_pb2.RouteAck(version=1))

    async def session() -> None:
        async for _ in RelayControlService(core(), None).Session(requests(), Context()):
            pass

    with pytest.raises(Aborted) as e:
        asyncio.run(session())
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_relay_flooding_the_controller_has_its_excess_dropped_and_counted():
    from controller.core import Hello, Settings
    from controller.relay_service import dispatch

    ctl = Controller({r: Region(id=r, name=r, country="DE", lat=0.0, lon=0.0) for r in REGIONS},
                     Policy({"global": Zone("global", frozenset(REGIONS))}),
                     Settings(relay_messages_per_s=10.0, relay_messages_burst=20.0), now=0.0)
    session = ctl.connect(Hello("aa", "n1", "127.0.0.1:9"), lambda m: None, 0.0, 0.0)
    report = relay_pb2.RelayMessage(report=relay_pb2.LinkReport(counters={"x": 1}))
    for i in range(1000):  # a thousand reports within the same instant
        report.report.counters["x"] = i
        dispatch(ctl, session, report, 0.0, 0.0)
    assert ctl.refused["relay-rate"] == 980
    assert session.counters == {"x": 19}  # the 20 of the burst went through, no more
    report.report.counters["x"] = 5000
    dispatch(ctl, session, report, 1.0, 1.0)  # a second later: within its rate again
    assert session.counters == {"x": 5000}
    assert ctl.status(1.0).refused == {"relay-rate": 980}


def test_a_hello_with_a_node_id_that_cannot_name_a_node_is_refused():
    catalogue = dict.fromkeys(REGIONS)
    for bad in ("", "a/b", "x" * 65, "n 1"):
        msg = relay_pb2.RelayMessage(hello=relay_pb2.Hello(
            region="aa", node_id=bad, probe_addr="127.0.0.1:9"))
        code, why = check_hello(msg, catalogue)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "node id" in why


def test_a_table_still_queued_is_replaced_by_a_newer_one():
    """A relay's outbox keeps one route table, the newest, and everything else in order."""
    from controller.core import Members
    from controller.distribution import Push
    from controller.relay_service import Outbox

    async def main() -> list:
        box = Outbox()
        first, second = Push("aa", 1, "n1", ()), Push("aa", 2, "n2", ())
        members = Members("aa/n", "eu", "a/b", ())
        for msg in (first, members, second, None):
            box.put(msg)
        assert box.superseded == 1
        return [await box.get() for _ in range(3)]

    assert asyncio.run(main()) == [Members("aa/n", "eu", "a/b", ()), Push("aa", 2, "n2", ()),
                                   None]


def test_reports_wait_for_a_route_computation_under_way_at_most_defer_s():
    """A relay's reports are taken in after REPORT_BATCH_S, but not while routes are
    computed beside the event loop: then when the computation ends (the shell calls
    take_reports), or after defer_s at the latest. Nothing is lost meanwhile."""
    from controller.core import Hello
    from controller.relay_service import REPORT_BATCH_S

    ctl = core()
    session = ctl.connect(Hello("aa", "n1", "127.0.0.1:9"), lambda m: None, 0.0, 0.0)
    report = relay_pb2.LinkReport(links=[relay_pb2.LinkSample(
        dst="bb", rtt_ms=10.0, min_rtt_ms=10.0, samples=5, window=5,
        state=relay_pb2.LINK_STATE_UP)])

    async def scenario(defer_s: float, end_computation: bool) -> list[int]:
        service = RelayControlService(ctl, None, defer_s=defer_s)
        taken = [ctl.reports]
        ctl.computing = True
        service.queue_report(session, report)
        await asyncio.sleep(REPORT_BATCH_S * 4)
        taken.append(ctl.reports)  # held for the computation
        if end_computation:
            ctl.computing = False
            service.take_reports()
        else:
            deadline = asyncio.get_running_loop().time() + 10 * defer_s
            while ctl.reports == taken[-1] and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        taken.append(ctl.reports)
        ctl.computing = False
        return taken

    before, held, after = asyncio.run(scenario(defer_s=60.0, end_computation=True))
    assert held == before and after == before + 1
    before, held, after = asyncio.run(scenario(defer_s=2.0, end_computation=False))
    assert held == before and after == before + 1  # taken in, computation or not
