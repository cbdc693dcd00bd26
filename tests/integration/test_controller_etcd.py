"""A controller process with its state on a real etcd (`--store etcd://...`, Debian's
etcd-server on free loopback ports, mutual TLS with the mesh's certificates): a drain is
acknowledged once etcd holds it and survives a restart, route versions are reserved above
every earlier term's, status shows the store and the replica, and while etcd is away reads go
on and writes are refused with UNAVAILABLE, until it returns (no restart)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from support import ETCD_MESH, ROOT, wait_for, write_regions

from controller import etcdstate
from controller.etcdstate import Keys
from controller.etcdstore import VERSION_BLOCK
from skymesh import certs, identity
from skymesh.cli import mesh
from skymesh.net.tls import TlsFiles, channel_credentials
from skymesh.v1 import admin_pb2, admin_pb2_grpc

TTL = "2"


def issue(ca: Path, out: Path, who: identity.Identity, hosts=()) -> TlsFiles:
    out.mkdir(parents=True, exist_ok=True)
    cert, key = certs.issue_identity(out, ca, who, list(hosts))
    return TlsFiles(ca / certs.BUNDLE, cert, key)


class Controller:
    def __init__(self, tmp: Path, store: str) -> None:
        ca = tmp / "ca"
        self.tls = issue(ca, tmp / "c1", identity.controller(ETCD_MESH, "c1"), ["127.0.0.1"])
        self.operator = issue(ca, tmp / "ops", identity.admin(ETCD_MESH, "olga", "operator"))
        self.regions = write_regions(tmp / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
        self.store = store
        self.log_path = tmp / "controller.log"
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.extra: list[str] = []

    def start(self) -> None:
        port = mesh.free_port()
        self.address = f"127.0.0.1:{port}"
        files = self.tls
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skymesh", "controller", "--listen", self.address,
             "--regions", str(self.regions), "--store", self.store, "--replica", "c1",
             "--election-ttl", TTL, "--ca", str(files.ca), "--cert", str(files.cert),
             "--key", str(files.key), *self.extra], stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT)
        log.close()
        wait_for(lambda: self.status(timeout=1) is not None or self.proc.poll() is not None,
                 30, "the controller serving")
        assert self.proc.poll() is None, self.log_path.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def call(self, method: str, request, timeout: float = 10):
        with grpc.secure_channel(self.address, channel_credentials(self.operator)) as ch:
            return getattr(admin_pb2_grpc.AdminStub(ch), method)(request, timeout=timeout)

    def status(self, timeout: float = 5) -> admin_pb2.StatusReply | None:
        try:
            return self.call("Status", admin_pb2.StatusRequest(), timeout)
        except grpc.RpcError:
            return None

    def drain(self, region: str, drained: bool = True) -> admin_pb2.DrainReply:
        return self.call("Drain", admin_pb2.DrainRequest(region=region, drained=drained))


@pytest.fixture
def controller(cluster, tmp_path: Path):
    c, _ = cluster
    ctl = Controller(tmp_path, c.url)
    ctl.start()
    yield ctl
    ctl.stop()


def config_keys(c, tls) -> list[str]:
    """The keys under the mesh's config/ on etcd."""
    import asyncio

    from controller.etcd import Etcd

    async def read():
        e = Etcd(c.endpoints, tls)
        try:
            kvs, _ = await e.get_prefix(Keys(ETCD_MESH).config)
            return [kv.key.decode().removeprefix(f"/skymesh/{ETCD_MESH}/config/")
                    for kv in kvs]
        finally:
            await e.close()
    return asyncio.run(read())


def reserved(c, tls) -> int:
    import asyncio

    from controller.etcd import Etcd

    async def read():
        e = Etcd(c.endpoints, tls)
        try:
            kv, _ = await e.get(Keys(ETCD_MESH).route_version)
            return etcdstate.decode_version(kv.key, kv.value) if kv else 0
        finally:
            await e.close()
    return asyncio.run(read())


def test_a_drain_kept_on_etcd_survives_a_restart_and_versions_go_on_above(cluster,
                                                                          controller):
    c, tls = cluster
    status = controller.status()
    assert status.store.kind == "etcd" and status.store.healthy
    assert status.leader == "c1" and status.replica == "c1"
    assert [(r.id, r.address, r.leader) for r in status.replicas] == \
        [("c1", controller.address, True)]
    first = reserved(c, tls)
    assert first >= VERSION_BLOCK
    # what the leader serves is on etcd too: the catalogue and the residency policy
    wait_for(lambda: config_keys(c, tls) == ["policy", "regions/aa", "regions/bb"], 10,
             "the configuration published")
    reply = controller.drain("aa")
    assert list(reply.drained_regions) == ["aa"]
    controller.stop()
    controller.start()
    after = controller.call("Regions", admin_pb2.RegionsRequest())
    assert {r.id: r.drained for r in after.regions} == {"aa": True, "bb": False}
    audit = controller.call("Audit", admin_pb2.AuditRequest()).entries
    assert [(e.actor, e.action, e.target) for e in audit] == \
        [("admin/operator/olga", "drain", "aa")]
    assert reserved(c, tls) == first + VERSION_BLOCK  # the new term went on above


def test_with_etcd_away_reads_go_on_writes_are_refused_then_recover(cluster, controller):
    c, _ = cluster
    c.stop(c.members[0])
    wait_for(lambda: not controller.status().store.healthy, 10, "the store seen away")
    assert controller.status().regions == 2  # reads go on
    with pytest.raises(grpc.RpcError) as e:
        controller.drain("bb")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "etcd" in e.value.details()
    c.restart(c.members[0])
    wait_for(lambda: controller.status().leader == "c1", 30, "leading again")
    assert list(controller.drain("bb").drained_regions) == ["bb"]


def test_a_replica_campaigns_with_the_address_it_is_told_to_advertise(cluster, tmp_path):
    c, _ = cluster
    ctl = Controller(tmp_path, c.url)
    ctl.extra = ["--advertise", "relay-facing.example:7400"]
    ctl.start()
    try:
        status = ctl.status()
        assert [(r.id, r.address) for r in status.replicas] == \
            [("c1", "relay-facing.example:7400")]
    finally:
        ctl.stop()
