"""Mutual TLS on a real controller process: who gets in at the handshake, who may do what
once in, and rotation of the CA and of leaf certificates while a relay's session stays open."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from support import ROOT, run_cli, wait_for, write_regions

from skymesh import certs, identity
from skymesh.cli import mesh
from skymesh.net.tls import TlsFiles, channel_credentials
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2, relay_pb2_grpc

MESH = "tls-test"


def issue(d: Path, who: identity.Identity, hosts=()) -> TlsFiles:
    certs.issue_identity(d, d, who, list(hosts))
    return TlsFiles.in_dir(d, certs.file_stem(who))


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    d = tmp_path / "certs"
    certs.ensure_dev_ca(d, mesh=MESH)
    stranger = tmp_path / "stranger"
    certs.ensure_dev_ca(stranger, mesh=MESH)  # the same mesh name, another CA
    return {
        "dir": d,
        "controller": issue(d, identity.controller(MESH, "c1"), ["127.0.0.1", "localhost"]),
        "relay-aa": issue(d, identity.relay(MESH, "aa", "n1")),
        "operator": issue(d, identity.admin(MESH, "olga", "operator")),
        "viewer": issue(d, identity.admin(MESH, "vic", "viewer")),
        "stranger": issue(stranger, identity.admin(MESH, "mallory", "operator")),
    }


@pytest.fixture
def controller(tmp_path: Path, pki: dict):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    port = mesh.free_port()
    files = pki["controller"]
    log = open(tmp_path / "controller.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "skymesh", "controller", "--listen",
                             f"127.0.0.1:{port}", "--regions", str(regions), "--state",
                             str(tmp_path / "state.json"), "--ca", str(files.ca), "--cert",
                             str(files.cert), "--key", str(files.key)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    address = f"127.0.0.1:{port}"
    try:
        with grpc.secure_channel(address, channel_credentials(pki["viewer"])) as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def stub(address: str, files: TlsFiles | None):
    ch = (grpc.insecure_channel(address) if files is None
          else grpc.secure_channel(address, channel_credentials(files)))
    return ch, admin_pb2_grpc.AdminStub(ch)


def status(address: str, files: TlsFiles | None) -> admin_pb2.StatusReply:
    ch, admin = stub(address, files)
    with ch:
        return admin.Status(admin_pb2.StatusRequest(), timeout=5)


def refused_code(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def test_plaintext_and_certificates_of_another_ca_are_refused_at_the_handshake(controller,
                                                                               pki):
    assert status(controller, pki["viewer"]).regions == 2
    assert refused_code(lambda: status(controller, None)) == grpc.StatusCode.UNAVAILABLE
    assert refused_code(lambda: status(controller, pki["stranger"])) == \
        grpc.StatusCode.UNAVAILABLE
    assert status(controller, pki["viewer"]).refused == {}  # never got as far as a call


def test_a_relay_certificate_of_one_region_cannot_speak_for_another(controller, pki):
    def session(region: str, node: str = "n1"):
        with grpc.secure_channel(controller, channel_credentials(pki["relay-aa"])) as ch:
            call = relay_pb2_grpc.RelayControlStub(ch).Session(iter([relay_pb2.RelayMessage(
                hello=relay_pb2.Hello(region=region, node_id=node, probe_addr="127.0.0.1:9"))]),
                timeout=10)
            return next(call)

    with pytest.raises(grpc.RpcError) as e:
        session("bb")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == ("certificate of relay n1 names region 'aa'; its hello "
                                 "claims 'bb'")
    assert session("aa").WhichOneof("msg") == "peers"
    assert status(controller, pki["viewer"]).refused == {"relay-identity": 1}
    # and relay certificates call no admin RPC
    assert refused_code(lambda: status(controller, pki["relay-aa"])) == \
        grpc.StatusCode.PERMISSION_DENIED


def test_a_viewer_reads_an_operator_drains_and_the_audit_log_says_who(controller, pki):
    drain = admin_pb2.DrainRequest(region="aa", drained=True)
    ch, viewer = stub(controller, pki["viewer"])
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            viewer.Drain(drain, timeout=5)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ch, operator = stub(controller, pki["operator"])
    with ch:
        assert operator.Drain(drain, timeout=5).drained_regions == ["aa"]
    files = pki["viewer"]
    proc = run_cli("admin", "audit", "--json", "--controller", controller, "--ca",
                   str(files.ca), "--cert", str(files.cert), "--key", str(files.key))
    assert proc.returncode == 0, proc.stderr
    entries = [(e["actor"], e["action"], e["target"]) for e in json.loads(proc.stdout)]
    assert entries == [("admin/viewer/vic", "denied", "admin-change"),
                       ("admin/operator/olga", "drain", "aa")]


def test_the_controller_will_not_start_in_plaintext_unless_told_so(tmp_path: Path):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    proc = run_cli("controller", "--listen", "127.0.0.1:0", "--regions", str(regions),
                   "--certs", str(tmp_path / "none"), timeout=30)
    assert proc.returncode == 2
    assert "no certificate matching controller-*.pem" in proc.stderr
    assert "--insecure" in proc.stderr


def test_rotating_the_ca_and_the_certificates_keeps_open_sessions(controller, pki):
    """A relay's session opened before the rotation stays open through a new CA, reissued
    certificates and a pruned bundle; new handshakes use the new files; certificates of the
    old CA are refused once it is pruned."""
    d = pki["dir"]
    outbox: queue.Queue = queue.Queue()
    outbox.put(relay_pb2.RelayMessage(hello=relay_pb2.Hello(region="aa", node_id="n1",
                                                            probe_addr="127.0.0.1:9")))
    ch = grpc.secure_channel(controller, channel_credentials(pki["relay-aa"]))
    call = relay_pb2_grpc.RelayControlStub(ch).Session(iter(outbox.get, None), timeout=60)
    assert next(call).WhichOneof("msg") == "peers"
    assert status(controller, pki["viewer"]).relays == 1
    old_viewer = [p.read_bytes() for p in (pki["viewer"].cert, pki["viewer"].key)]

    certs.create_ca(d, mesh=MESH)  # the bundle now trusts the new CA and the old one
    issue(d, identity.controller(MESH, "c1"), ["127.0.0.1", "localhost"])
    new_viewer = issue(d, identity.admin(MESH, "vic", "viewer"))
    wait_for(lambda: _issuer_of_served(controller, pki["operator"]) == _subject(d),
             10, "the controller to serve the reissued certificate")
    assert status(controller, new_viewer).relays == 1  # new CA's client certificate

    certs.prune_bundle(d)  # from now on only the new CA
    old = d / "old-viewer"
    old.mkdir()
    (old / "v.pem").write_bytes(old_viewer[0])
    (old / "v.key").write_bytes(old_viewer[1])
    old_files = TlsFiles(pki["viewer"].ca, old / "v.pem", old / "v.key")
    # the pruned bundle is picked up at the next handshake
    wait_for(lambda: _refused(controller, old_files), 10,
             "a certificate of the old CA to be refused")
    assert status(controller, new_viewer).relays == 1  # the relay's session never dropped
    assert not call.done()
    outbox.put(None)  # the relay ends its session
    ch.close()


def _subject(d: Path) -> str:
    return certs.load_cert(d / certs.CA_CERT).subject.rfc4514_string()


def _issuer_of_served(address: str, files: TlsFiles) -> str:
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError):
        return ""
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def _refused(address: str, files: TlsFiles) -> bool:
    try:
        status(address, files)
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.UNAVAILABLE
    return False
