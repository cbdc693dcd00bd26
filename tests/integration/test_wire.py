"""The wire contract: generated stubs are current, and bad input on the wire gets a status with
a reason, is counted, and never takes a process down."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from support import ROOT, cli_json, wait_for, write_matrix, write_regions

from skymesh.cli import mesh
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2, relay_pb2_grpc

PROTOS = sorted((ROOT / "proto" / "skymesh" / "v1").glob("*.proto"))


def test_generated_stubs_are_current(tmp_path):
    """`make proto` output matches what is committed (compared as descriptors, so the
    version of grpcio-tools that generated them does not matter)."""
    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--descriptor_set_out={out}", *map(str, PROTOS)], check=True)
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(
        out.read_bytes()).file}
    for proto in fresh.values():  # protoc adds json names; generated code leaves them out
        for message in proto.message_type:
            _drop_json_names(message)
    assert set(fresh) == {f"skymesh/v1/{p.name}" for p in PROTOS}
    for module in (relay_pb2, admin_pb2):
        committed = descriptor_pb2.FileDescriptorProto.FromString(
            module.DESCRIPTOR.serialized_pb)
        assert committed == fresh[committed.name], (
            f"{committed.name} changed: run `make proto` and commit skymesh/v1/")
    for name, proto in fresh.items():
        grpc_file = ROOT / name.replace(".proto", "_pb2_grpc.py")
        text = grpc_file.read_text()
        for service in proto.service:
            for method in service.method:
                assert f"/{proto.package}.{service.name}/{method.name}" in text, (
                    f"{grpc_file} lacks {service.name}.{method.name}: run `make proto`")


def _drop_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    for f in message.field:
        f.ClearField("json_name")
    for nested in message.nested_type:
        _drop_json_names(nested)


@pytest.fixture
def controller(tmp_path):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    port = mesh.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skymesh", "controller", "--listen",
                             f"127.0.0.1:{port}", "--regions", str(regions),
                             "--insecure"],  # the wire contract; tests of TLS: test_mtls.py
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
        yield address, channel, proc
    proc.terminate()
    proc.wait(10)


def session(channel: grpc.Channel, *messages: relay_pb2.RelayMessage, replies: int = 0):
    """Open a relay session, send the messages, read `replies` messages."""
    stub = relay_pb2_grpc.RelayControlStub(channel)
    call = stub.Session(iter(messages), timeout=10)
    return [next(call) for _ in range(replies)] if replies else list(call)


def hello(region: str, addr: str = "127.0.0.1:9") -> relay_pb2.RelayMessage:
    return relay_pb2.RelayMessage(hello=relay_pb2.Hello(region=region, node_id="t",
                                                         probe_addr=addr))


def status(channel: grpc.Channel) -> admin_pb2.StatusReply:
    return admin_pb2_grpc.AdminStub(channel).Status(admin_pb2.StatusRequest(), timeout=5)


def test_unknown_region_is_refused_with_a_reason(controller):
    _, channel, _ = controller
    with pytest.raises(grpc.RpcError) as e:
        session(channel, hello("atlantis"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown region 'atlantis'" in e.value.details()


def test_a_session_must_begin_with_hello(controller):
    _, channel, _ = controller
    report = relay_pb2.RelayMessage(report=relay_pb2.LinkReport())
    with pytest.raises(grpc.RpcError) as e:
        session(channel, report)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a hello" in e.value.details()


def test_bad_probe_address_is_refused(controller):
    _, channel, _ = controller
    with pytest.raises(grpc.RpcError) as e:
        session(channel, hello("aa", "nowhere"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "probe_addr 'nowhere'" in e.value.details()


def test_malformed_link_samples_are_counted_not_fatal(controller):
    _, channel, proc = controller
    stub = relay_pb2_grpc.RelayControlStub(channel)
    bad = [relay_pb2.LinkSample(dst="bb", rtt_ms=math.nan, state=relay_pb2.LINK_STATE_UP),
           relay_pb2.LinkSample(dst="bb", rtt_ms=-5, state=relay_pb2.LINK_STATE_UP),
           relay_pb2.LinkSample(dst="zz", rtt_ms=5, state=relay_pb2.LINK_STATE_UP),
           relay_pb2.LinkSample(dst="bb", rtt_ms=5, loss=7, state=relay_pb2.LINK_STATE_UP)]
    messages = [hello("aa", "127.0.0.1:9"), hello("bb", "127.0.0.1:10")]
    calls = []
    for msg in messages:
        outgoing = [msg]
        if msg.hello.region == "aa":
            outgoing.append(relay_pb2.RelayMessage(report=relay_pb2.LinkReport(links=bad)))
        call = stub.Session(iter(outgoing), timeout=10)
        calls.append(call)
        next(call)  # the peer list: the session is registered
    wait_for(lambda: status(channel).rejected_samples >= 4, 10, "the samples to be counted")
    assert status(channel).links_up == 0  # none of them made a link
    assert proc.poll() is None


def test_relay_drops_and_counts_garbage_datagrams(tmp_path, start_mesh):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    matrix = write_matrix(tmp_path / "m.csv", {("aa", "bb"): 20})
    start_mesh("--regions", str(regions), "--latency-matrix", str(matrix))
    target = next(r for r in cli_json("admin", "regions") if r["id"] == "bb")
    host, port = target["probe_addr"].rsplit(":", 1)
    garbage = [b"", b"x", b"SM\x01\x09" + bytes(8), b"SM\x07\x01" + bytes(5), bytes(4000),
               b"SM\x01\x01\x00\x00\x00\x01\x05ZZZZZ"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in garbage:
            s.sendto(data, (host, int(port)))
    def dropped(counters: dict) -> int:  # probes that do not parse, and channel datagrams
        return counters.get("malformed", 0) + sum(
            v for k, v in counters.items() if k.startswith("dropped."))

    counted = wait_for(
        lambda: (r := next(x for x in cli_json("admin", "regions") if x["id"] == "bb"))
        and dropped(r["counters"]) >= len(garbage) - 1 and r, 15,
        "the relay to report the malformed datagrams")
    assert counted["connected"]
    status = cli_json("admin", "status")
    assert status["relays"] == 2 and status["links_up"] == 2
    assert Path(mesh.state_file()).exists()


def test_a_relay_given_several_controller_replicas_tries_the_next(controller, tmp_path):
    address, channel, _ = controller
    dead = f"127.0.0.1:{mesh.free_port()}"  # nothing listens there
    log = open(tmp_path / "relay.log", "w")
    relay = subprocess.Popen([sys.executable, "-m", "skymesh", "relay", "--region", "aa",
                              "--controller", f"{dead},{address}", "--bind", "127.0.0.1:0",
                              "--insecure"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(lambda: status(channel).relays == 1, 20, "the relay connected")
    finally:
        relay.terminate()
        relay.wait(10)
        log.close()
    text = (tmp_path / "relay.log").read_text()
    assert f"controller {dead}: UNAVAILABLE" in text and f"connected to controller {address}" \
        in text
