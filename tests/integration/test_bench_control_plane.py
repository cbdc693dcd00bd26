"""Smoke tests of the control-plane benchmark (bench/control_plane.py): the emulated relays'
hand-made messages are what relay_pb2 reads, and a tiny run (8 relays against the real
controller, mutual TLS, no baseline) converges and reports sane figures. No timing aim is
asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import emurelay  # noqa: E402
from skymesh.v1 import relay_pb2  # noqa: E402

pytestmark = pytest.mark.processes

RELAYS = 8


def test_hand_made_messages_parse_as_the_wire_contract() -> None:
    link = emurelay.Link("r0002", 80.0, time.monotonic() - 1.0, phase=5)
    blank = link.entry(0)
    link.advance(time.monotonic())
    msg = relay_pb2.RelayMessage.FromString(
        emurelay.report_message([blank, link.entry(3)], 1700000000.5, full=True))
    report = msg.report
    assert report.full and report.sent_unix_s == 1700000000.5
    first, second = report.links
    assert (first.dst, first.state, first.samples, first.age_s) == (
        "r0002", relay_pb2.LINK_STATE_UNSPECIFIED, 0, -1.0)
    assert second.state == relay_pb2.LINK_STATE_UP and second.samples == 3
    assert second.window == 3 and second.min_rtt_ms == 80.0
    assert abs(second.rtt_ms - 80.0) <= 80.0 * emurelay.NOISE
    ack = relay_pb2.RelayMessage.FromString(emurelay.ack_message(2**40, b"n0nce")).ack
    assert (ack.version, ack.nonce, ack.accepted) == (2**40, "n0nce", True)
    assert relay_pb2.RelayMessage.FromString(emurelay.CHANNELS_MESSAGE).WhichOneof("msg") == \
        "channels"
    table = relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(
        version=7, nonce="abc", routes=[relay_pb2.RouteEntry(dst="b", next_hop="c")])
    ).SerializeToString()
    number, body = emurelay.split_message(table)
    assert number == 2 and emurelay.table_header(body) == (7, b"abc")


class Outbox(list):
    put_nowait = list.append


def reports(box: Outbox) -> list[relay_pb2.LinkReport]:
    msgs = [relay_pb2.RelayMessage.FromString(m) for m in box]
    box.clear()
    return [m.report for m in msgs if m.WhichOneof("msg") == "report"]


def test_partial_mesh_measures_near_peers_and_routes_and_samples_the_rest() -> None:
    n = 300  # above LINK.partial_mesh_above
    regions = {f"r{i:04d}": {"id": f"r{i:04d}", "lat": (i % 90) - 45.0, "lon": i - 150.0}
               for i in range(1, n + 1)}
    emu = emurelay.Emulator("127.0.0.1:1", regions, seed=1,
                            protocol=emurelay.PROTOCOL_BY_CHANGE, serve=["r0001"])
    relay = emu.relays["r0001"]
    box = Outbox()
    relay.started(box)
    (first,) = reports(box)
    assert first.full and not first.links
    peers = [relay_pb2.Peer(region=r, probe_addr="127.0.0.1:1", near=r <= "r0017")
             for r in regions if r != "r0001"]
    relay.on_message(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
        peers=peers, sample_every_s=20.0)).SerializeToString())
    rows = [relay_pb2.RouteEntry(dst=r, next_hop="r0100", backup_next_hop="r0200")
            for r in regions if r != "r0001"]
    relay.on_message(relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(
        version=3, nonce="n", routes=rows)).SerializeToString())
    ack = relay_pb2.RelayMessage.FromString(box.pop(0)).ack
    assert (ack.version, ack.nonce, ack.accepted) == (3, "n", True)
    continuous = {f"r{i:04d}" for i in range(2, 18)} | {"r0100", "r0200"}
    sampled: set[str] = set()
    for _ in range(20):  # a sampling period (20 s)
        for link in relay.links.values():
            link.born -= 1.0  # no waiting for the fast probes
        relay.tick()
        for report in reports(box):
            got = {s.dst for s in report.links}
            if report.full:
                assert continuous <= got
            else:
                assert not got - continuous - {s.dst for s in report.links if s.samples == 3}
            sampled |= {s.dst for s in report.links} - continuous
    assert {link.dst for link in relay.cont} == continuous
    # every other peer had its turn, once: a burst of 3 replies
    others = set(regions) - continuous - {"r0001"}
    assert sampled == others
    assert {relay.links[r].samples for r in others} == {emurelay.FIRST_REPLIES}
    # a peer that leaves (protocol 2: a change to the list) is measured no more
    relay.on_message(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
        incremental=True, removed=["r0002"])).SerializeToString())
    relay.tick()
    assert "r0002" not in relay.links and "r0002" not in {link.dst for link in relay.cont}


def test_tiny_run_converges_and_reports_sane_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "control_plane.py"), "--sizes", str(RELAYS),
         "--no-baseline", "--json", "--steady", "3", "--changes", "1", "--timeout", "40"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["aims"]  # the report always lists the aims, met or not
    (result,) = report["results"]
    assert result["error"] == "", (result, done.stderr[-3000:])
    assert result["n"] == RELAYS and result["tls"]
    assert 0 < result["converged_s"] < 40
    assert result["links_measured"] == RELAYS * (RELAYS - 1)
    assert 0 <= result["cpu_pct"] < 200 and result["rss_peak_mb"] > 10
    # one report a second from each relay
    assert RELAYS / 2 <= result["reports_per_s"] <= RELAYS * 2
    assert result["admin_p50_ms"] is not None and result["admin_p50_ms"] > 0
    assert result["disconnects"] == 0
    (push,) = result["pushes"]
    assert push["relays"] >= 1 and result["push_p50_ms"] > 0
    # the relays counted got tables after the change: those that moved their paths off the
    # link, and the others of that round
    assert push["relays"] <= push["tables_relays"]
    assert push["max_ms"] <= push["tables_max_ms"]


def test_the_replicas_bench_runs_tiny_and_reports_each_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replicas.py"), "--relays", "8", "--changes",
         "1", "--steady", "3", "--election-ttl", "2", "--json"],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert "error" not in out, (out, done.stderr[-3000:])
    assert out["relays"] == 8 and out["replicas"] == 3 and 0 < out["converged_s"] < 60
    assert set(out["cpu_pct"]) == {"c1", "c2", "c3", "etcd"}
    # a few writes a second at most, whatever the reports (8 a second here)
    assert 0 <= out["etcd_writes_per_s"] < 5 and out["reports_per_s"] > 0
    assert out["push_relays"] >= 1 and out["push_p99_ms"] > 0
    assert out["new_leader"] != "" and 0 < out["failover_s"] < 30
    assert set(out["aims"]) == {"push_p99_ms", "failover_s", "etcd_writes_bounded"}
