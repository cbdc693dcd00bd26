"""The standard gRPC health service and reflection of real processes on loopback
(skymesh/net/health.py, controller/server.py, relay/health.py): a controller serves "" and
each of its services (the EdgeResolver on its own port) once started and NOT_SERVING, seen
by a watcher, when it shuts down; a replica on etcd serves as a whole only while it leads,
and nothing while it has no etcd; reflection lists the services; a relay's health turns
SERVING once it is connected and holds route tables, and back when its controller dies."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support import ETCD_MESH, mesh_ca, spawn, wait_for, write_regions

from skymesh import certs, identity
from skymesh.cli import mesh
from skymesh.net.tls import TlsFiles, channel_credentials

RELAY_CONTROL = "skymesh.v1.RelayControl"
ADMIN = "skymesh.v1.Admin"
RESOLVER = "skymesh.v1.EdgeResolver"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
REGIONS = {"aa": (50.0, 8.0), "bb": (48.0, 2.0)}
Status = health_pb2.HealthCheckResponse.ServingStatus


def channel(address: str, tls: TlsFiles | None = None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(tls))


def check(address: str, service: str = "", tls: TlsFiles | None = None) -> str:
    """The status's name, or the call's error code's (UNAVAILABLE: nothing listens yet)."""
    with channel(address, tls) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=3)
        except grpc.RpcError as e:
            return e.code().name
        return Status.Name(reply.status)


def services(address: str, tls: TlsFiles | None = None) -> set[str]:
    with channel(address, tls) as ch:
        return set(ProtoReflectionDescriptorDatabase(ch).get_services())








def insecure_controller(tmp_path: Path, port: int, resolve_port: int) -> list[str]:
    regions = write_regions(tmp_path / "regions", REGIONS)
    return ["controller", "--insecure", "--listen", f"127.0.0.1:{port}", "--regions",
            str(regions), "--resolve-listen", f"127.0.0.1:{resolve_port}",
            "--probe-interval", "0.3"]


def test_a_controller_and_a_relay_serve_when_they_should(tmp_path, processes):
    port, resolve_port, health_port = (mesh.free_port() for _ in range(3))
    controller, relay_health = f"127.0.0.1:{port}", f"127.0.0.1:{health_port}"
    # the relay first: listening, but not serving without a controller
    processes.append(spawn(["relay", "--insecure", "--region", "aa", "--controller",
                            controller, "--health-listen", relay_health],
                           tmp_path / "relay.log"))
    wait_for(lambda: check(relay_health) != "UNAVAILABLE", 20, "the relay's health listener")
    assert check(relay_health) == "NOT_SERVING"
    assert services(relay_health) == {HEALTH, REFLECTION}

    ctl = spawn(insecure_controller(tmp_path, port, resolve_port), tmp_path / "ctl.log")
    processes.append(ctl)
    wait_for(lambda: check(controller) == "SERVING", 20, "the controller serving")
    for service in (RELAY_CONTROL, ADMIN):
        assert check(controller, service) == "SERVING"
    assert check(controller, "no.such.Service") == "NOT_FOUND"
    assert services(controller) == {RELAY_CONTROL, ADMIN, HEALTH, REFLECTION}
    # the resolver's own listener: serving once it has indexed the mesh
    resolver = f"127.0.0.1:{resolve_port}"
    wait_for(lambda: check(resolver, RESOLVER) == "SERVING", 10, "the resolver serving")
    assert check(resolver) == "SERVING"
    assert services(resolver) == {RESOLVER, HEALTH, REFLECTION}

    # connected, and holding the tables the controller pushed
    wait_for(lambda: check(relay_health) == "SERVING", 20, "the relay serving")
    assert "applied routes v" in (tmp_path / "relay.log").read_text()

    # the controller shuts down: a watcher sees NOT_SERVING before its server stops
    with channel(controller) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(),
                                                     timeout=20)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        ctl.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    ctl.wait(10)
    # the relay lost its session: not serving, though it forwards on its tables
    wait_for(lambda: check(relay_health) == "NOT_SERVING", 20, "the relay not serving")

    # a controller again (killed this time, no goodbye): the relay serves again, then not
    ctl = spawn(insecure_controller(tmp_path, port, resolve_port), tmp_path / "ctl.log")
    processes.append(ctl)
    wait_for(lambda: check(relay_health) == "SERVING", 30, "the relay serving again")
    ctl.kill()
    ctl.wait(10)
    wait_for(lambda: check(relay_health) == "NOT_SERVING", 20, "the relay not serving")


def https_get(address: str, path: str, files: TlsFiles) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.load_cert_chain(files.cert, files.key)
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def issue(ca: Path, out: Path, who: identity.Identity, hosts=()) -> TlsFiles:
    out.mkdir(parents=True, exist_ok=True)
    cert, key = certs.issue_identity(out, ca, who, list(hosts))
    return TlsFiles(ca / certs.BUNDLE, cert, key)


def replica(tmp_path: Path, name: str, store: str, port: int, resolve_port: int,
            *extra: str) -> list[str]:
    files = issue(tmp_path / "ca", tmp_path / name, identity.controller(ETCD_MESH, name),
                  ["127.0.0.1"])
    regions = write_regions(tmp_path / "regions", REGIONS)
    return ["controller", "--listen", f"127.0.0.1:{port}", "--regions", str(regions),
            "--store", store, "--replica", name, "--election-ttl", "2",
            "--resolve-listen", f"127.0.0.1:{resolve_port}", "--ca", str(files.ca),
            "--cert", str(files.cert), "--key", str(files.key), *extra]


def test_replicas_serve_as_a_whole_only_while_leading(cluster, tmp_path, processes):
    c, _ = cluster
    operator = issue(tmp_path / "ca", tmp_path / "ops",
                     identity.admin(ETCD_MESH, "olga", "operator"))
    ports = {n: (mesh.free_port(), mesh.free_port()) for n in ("c1", "c2")}
    addr = {n: f"127.0.0.1:{p}" for n, (p, _) in ports.items()}
    c1 = spawn(replica(tmp_path, "c1", c.url, *ports["c1"]), tmp_path / "c1.log")
    processes.append(c1)
    wait_for(lambda: check(addr["c1"], tls=operator) == "SERVING", 30, "c1 leading")
    map_port = mesh.free_port()  # c2 serves the live map too
    c2 = spawn(replica(tmp_path, "c2", c.url, *ports["c2"], "--dashboard-listen",
                       f"127.0.0.1:{map_port}"), tmp_path / "c2.log")
    processes.append(c2)
    # c2 follows: not serving as a whole, but it carries relays' sessions and admin calls
    # to the leader, and the resolver's
    wait_for(lambda: check(addr["c2"], RELAY_CONTROL, operator) == "SERVING", 30,
             "c2 carrying sessions to the leader")
    assert check(addr["c2"], tls=operator) == "NOT_SERVING"
    assert check(addr["c2"], ADMIN, operator) == "SERVING"
    assert check(addr["c2"], RESOLVER, operator) == "SERVING"
    assert services(addr["c2"], operator) == {RELAY_CONTROL, ADMIN, RESOLVER, HEALTH,
                                              REFLECTION}
    # c2's live map reads the mesh through its admin service, relayed to the leader
    code, state = https_get(f"127.0.0.1:{map_port}", "/api/state", operator)
    assert code == 200 and {r["id"] for r in state["regions"]} == set(REGIONS), state
    # c1 resigns as it shuts down: NOT_SERVING first, then c2 leads
    c1.send_signal(signal.SIGTERM)
    c1.wait(10)
    wait_for(lambda: check(addr["c2"], tls=operator) == "SERVING", 15, "c2 leading")
    assert check(addr["c2"], RELAY_CONTROL, operator) == "SERVING"
    assert check(addr["c2"], ADMIN, operator) == "SERVING"
    # its own resolver now, once it has indexed the mesh it holds
    wait_for(lambda: check(addr["c2"], RESOLVER, operator) == "SERVING", 5,
             "c2's resolver serving")


def test_a_replica_without_etcd_serves_nothing(tmp_path, processes):
    # nothing listens at the store's address: the replica starts its server, and waits
    # for etcd (until it gives up)
    mesh_ca(tmp_path / "ca")
    port, resolve_port = mesh.free_port(), mesh.free_port()
    args = replica(tmp_path, "c1", f"etcd://127.0.0.1:{mesh.free_port()}", port, resolve_port)
    operator = issue(tmp_path / "ca", tmp_path / "ops",
                     identity.admin(ETCD_MESH, "olga", "operator"))
    processes.append(spawn(args, tmp_path / "c1.log"))
    address = f"127.0.0.1:{port}"
    wait_for(lambda: check(address, tls=operator) != "UNAVAILABLE", 20, "its server")
    for service in ("", RELAY_CONTROL, ADMIN, RESOLVER):
        assert check(address, service, operator) == "NOT_SERVING", service
    assert check(f"127.0.0.1:{resolve_port}", tls=operator) == "NOT_SERVING"


def test_grpcurl_lists_and_checks(tmp_path, processes):
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl is not installed")
    port, resolve_port = mesh.free_port(), mesh.free_port()
    processes.append(spawn(insecure_controller(tmp_path, port, resolve_port),
                           tmp_path / "ctl.log"))
    address = f"127.0.0.1:{port}"
    wait_for(lambda: check(address) == "SERVING", 20, "the controller serving")
    listed = subprocess.run([grpcurl, "-plaintext", address, "list"], capture_output=True,
                            text=True, timeout=20)
    assert listed.returncode == 0, listed.stderr
    assert {RELAY_CONTROL, ADMIN, HEALTH} <= set(listed.stdout.split())
    checked = subprocess.run([grpcurl, "-plaintext", "-d", f'{{"service": "{ADMIN}"}}',
                              address, f"{HEALTH}/Check"], capture_output=True, text=True,
                             timeout=20)
    assert checked.returncode == 0, checked.stderr
    assert '"SERVING"' in checked.stdout
