"""Who may do what: the relay and admin services given the peer's certificate as gRPC gives
it (auth_context's x509_pem_cert), with real certificates of a mesh CA made here; the audit
log through the store. (tests/integration/test_mtls.py runs the handshakes on a real server.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from controller import callers
from controller.admin_service import ACTIONS, AdminService
from controller.core import Controller
from controller.relay_service import RelayControlService
from controller.store import AuditEntry, FileStore, MemoryStore
from skymesh import certs, identity
from skymesh.catalogue import Region
from skymesh.identity import Identity
from skymesh.policy import Policy, Zone
from skymesh.v1 import admin_pb2, relay_pb2

REGIONS = ("aa", "bb")
MESH = "test-mesh"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class Context:
    """What the services ask of a call's context: the verified peer certificate, abort."""

    def __init__(self, pem: bytes | None, metadata: tuple = ()) -> None:
        self.pem = pem
        self.metadata = metadata

    def auth_context(self) -> dict:
        return {"x509_pem_cert": [self.pem]} if self.pem else {}

    def invocation_metadata(self) -> tuple:
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@pytest.fixture(scope="module")
def pems(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("certs")
    certs.ensure_dev_ca(d, mesh=MESH)
    other = tmp_path_factory.mktemp("other")
    certs.ensure_dev_ca(other, mesh="other-mesh")
    who = {"relay-aa": identity.relay(MESH, "aa", "n1"),
           "operator": identity.admin(MESH, "olga", "operator"),
           "viewer": identity.admin(MESH, "vic", "viewer"),
           "controller": identity.controller(MESH, "c1")}
    out = {}
    for name, ident in who.items():
        cert, _ = certs.issue_identity(d, d, ident, ["localhost"] if name == "controller"
                                       else [])
        out[name] = cert.read_bytes()
    cert, _ = certs.issue_identity(other, other, identity.admin("other-mesh", "eve",
                                                                "operator"))
    out["foreign-operator"] = cert.read_bytes()
    cert, _ = certs.issue_cert(d, d, "plain", ["localhost"])  # no SPIFFE ID
    out["plain"] = cert.read_bytes()
    return out


def core(store=None) -> Controller:
    catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                 for r in REGIONS}
    policy = Policy({"global": Zone("global", frozenset(REGIONS))})
    return Controller(catalogue, policy, store=store, now=0.0)


def outcome(coro) -> tuple[grpc.StatusCode, str] | None:
    try:
        asyncio.run(coro)
    except Aborted as e:
        return e.code, e.details
    return None


def hello(region: str, node: str):
    async def requests():
        yield relay_pb2.RelayMessage(hello=relay_pb2.Hello(
            region=region, node_id=node, probe_addr="127.0.0.1:9"))
    return requests()


async def open_session(service: RelayControlService, requests, ctx: Context) -> list:
    stream = service.Session(requests, ctx)
    first = await anext(stream)  # the peers message: the session was accepted
    await stream.aclose()
    return [first]


def test_a_relay_speaks_only_for_the_region_and_node_its_certificate_names(pems):
    ctl = core()
    service = RelayControlService(ctl, MESH)
    assert outcome(open_session(service, hello("aa", "n1"), Context(pems["relay-aa"]))) is None
    code, reason = outcome(open_session(service, hello("bb", "n1"),
                                        Context(pems["relay-aa"])))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert reason == "certificate of relay n1 names region 'aa'; its hello claims 'bb'"
    code, reason = outcome(open_session(service, hello("aa", "n2"),
                                        Context(pems["relay-aa"])))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "claims node 'n2'" in reason
    for who in ("operator", "controller", "plain"):
        code, reason = outcome(open_session(service, hello("aa", "n1"), Context(pems[who])))
        assert code == grpc.StatusCode.PERMISSION_DENIED, who
    assert ctl.refused["relay-identity"] == 5
    assert "bb" not in ctl.sessions


def test_a_replica_relays_for_the_relay_it_checked_and_no_one_else_can_claim_to(pems):
    ctl = core()
    service = RelayControlService(ctl, MESH)
    for_aa = ((callers.ON_BEHALF_OF, identity.relay(MESH, "aa", "n1").uri),)
    # a follower replica (a controller certificate of the mesh) relaying relay aa/n1
    assert outcome(open_session(service, hello("aa", "n1"),
                                Context(pems["controller"], for_aa))) is None
    code, reason = outcome(open_session(service, hello("bb", "n1"),
                                        Context(pems["controller"], for_aa)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "claims 'bb'" in reason
    # anyone else saying so is taken for who their certificate names
    for who in ("operator", "relay-aa"):
        claim = ((callers.ON_BEHALF_OF, identity.relay(MESH, "bb", "n1").uri),)
        code, _ = outcome(open_session(service, hello("bb", "n1"), Context(pems[who], claim)))
        assert code == grpc.StatusCode.PERMISSION_DENIED, who
    # a replica relaying something that is not an identity relays no one
    bogus = ((callers.ON_BEHALF_OF, "spiffe://test/nothing"),)
    code, _ = outcome(open_session(service, hello("aa", "n1"),
                                   Context(pems["controller"], bogus)))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_without_a_mesh_the_relay_service_takes_any_hello(pems):
    ctl = core()
    assert outcome(open_session(RelayControlService(ctl, None), hello("bb", "x"),
                                Context(None))) is None


def call(service: AdminService, rpc: str, pem: bytes | None, request=None):
    request = request if request is not None else getattr(admin_pb2, {
        "PlanFailover": "FailoverRequest"}.get(rpc, f"{rpc}Request"))()
    return outcome(getattr(service, rpc)(request, Context(pem)))


def test_viewers_read_operators_change_relays_and_strangers_do_neither(pems):
    ctl = core()
    service = AdminService(ctl, MESH)
    drain = admin_pb2.DrainRequest(region="aa", drained=True)
    for rpc in ("Status", "Regions", "Links", "Zones", "Channels", "Events", "Audit"):
        assert call(service, rpc, pems["viewer"]) is None, rpc
        assert call(service, rpc, pems["operator"]) is None, rpc
    code, reason = call(service, "Drain", pems["viewer"], drain)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert reason == "admin/viewer/vic may not call Drain: it takes an operator certificate"
    assert "aa" not in ctl.drained
    for who in ("relay-aa", "controller", "plain", "foreign-operator", None):
        for rpc in ("Status", "Drain"):
            code, _ = call(service, rpc, pems.get(who), drain if rpc == "Drain" else None)
            assert code == grpc.StatusCode.PERMISSION_DENIED, (who, rpc)
    assert call(service, "Drain", pems["operator"], drain) is None
    assert ctl.drained == {"aa"}
    assert ctl.refused == {"admin-change": 6, "admin-read": 5}


def test_every_admin_rpc_has_a_rule():
    from skymesh.v1 import admin_pb2_grpc

    rpcs = {n for n in dir(admin_pb2_grpc.AdminServicer) if n[0].isupper()}
    assert rpcs == set(ACTIONS)


def test_changes_and_refusals_go_to_the_audit_log_with_who_made_them(pems, tmp_path: Path):
    store = FileStore(tmp_path / "state.json")
    ctl = core(store)
    service = AdminService(ctl, MESH)
    assert call(service, "Drain", pems["operator"],
                admin_pb2.DrainRequest(region="aa", drained=True)) is None
    assert call(service, "Drain", pems["viewer"],
                admin_pb2.DrainRequest(region="bb", drained=True)) is not None
    assert call(service, "Drain", pems["operator"],
                admin_pb2.DrainRequest(region="aa", drained=False)) is None
    entries = [(e.actor, e.action, e.target) for e in FileStore(store.path).audit()]
    assert entries == [("admin/operator/olga", "drain", "aa"),
                       ("admin/viewer/vic", "denied", "admin-change"),
                       ("admin/operator/olga", "undrain", "aa")]
    reply = asyncio.run(service.Audit(admin_pb2.AuditRequest(limit=2),
                                      Context(pems["viewer"])))
    assert [(e.actor, e.action) for e in reply.entries] == [
        ("admin/viewer/vic", "denied"), ("admin/operator/olga", "undrain")]


def test_a_change_whose_audit_entry_cannot_be_kept_is_not_made(tmp_path: Path):
    class FullDisk(MemoryStore):
        def append_audit(self, entry: AuditEntry) -> None:
            raise OSError(28, "No space left on device")

    ctl = core(FullDisk())
    code, reason = call(AdminService(ctl, None), "Drain", None,
                        admin_pb2.DrainRequest(region="aa", drained=True))
    assert code == grpc.StatusCode.UNAVAILABLE and "No space left" in reason
    assert ctl.drained == set()


def test_only_operators_rotate_the_fabric_key_and_it_is_audited(pems):
    ctl = core()
    service = AdminService(ctl, MESH)
    code, reason = call(service, "RotateFabricKey", pems["viewer"])
    assert code == grpc.StatusCode.PERMISSION_DENIED and "operator certificate" in reason
    assert ctl.keyring.phase == "steady"
    reply = asyncio.run(service.RotateFabricKey(admin_pb2.RotateFabricKeyRequest(),
                                                Context(pems["operator"])))
    assert reply.epoch == 2 and reply.sealing_epoch == 1 and list(reply.epochs) == [1, 2]
    assert 0 < reply.seals_in_s < reply.retires_in_s
    code, reason = call(service, "RotateFabricKey", pems["operator"])
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "under way" in reason
    assert [(e.actor, e.action) for e in ctl.audit_log()] == [
        ("admin/viewer/vic", "denied"), ("admin/operator/olga", "rotate-fabric-key")]


def test_a_torn_last_line_of_the_audit_file_is_skipped(tmp_path: Path):
    store = FileStore(tmp_path / "state.json")
    store.append_audit(AuditEntry(1.0, "admin/operator/o", "drain", "aa"))
    with open(store.audit_path, "a") as f:
        f.write('{"at_unix_s": 2.0, "actor": "adm')
    assert [e.target for e in FileStore(store.path).audit()] == ["aa"]


@pytest.mark.parametrize("uri, problem", [
    ("https://m/relay/a/b", "not a SPIFFE ID"),
    ("spiffe://m/relay/a", "names none of"),
    ("spiffe://M/relay/a/b", "mesh name"),
    ("spiffe://m/admin/root/x", "admin role"),
    ("spiffe://m/relay/a/../b", "names none of"),
    ("spiffe://m/relay/a/..", "node id"),
    ("spiffe://m/controller/", "controller id"),
])
def test_spiffe_ids_that_name_no_identity_are_refused(uri: str, problem: str):
    with pytest.raises(identity.IdentityError, match=problem):
        identity.parse(uri)


def test_identities_round_trip_through_their_spiffe_ids():
    for who in (identity.relay("m", "tokyo", "n1"), identity.controller("m", "c-1"),
                identity.admin("m", "alice", "viewer")):
        assert identity.parse(who.uri) == who
        assert isinstance(who, Identity)
    assert identity.admin("m", "a", "operator").may("change")
    assert not identity.admin("m", "a", "viewer").may("change")
    assert not identity.relay("m", "r", "n").may("read")
