"""The controller's state as etcd holds it (controller/etcdstate.py): keys per mesh, values
that read back as written, and values that cannot be trusted refused with their key named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller import etcdstate
from controller.store import AuditEntry

KEYS = etcdstate.Keys("prod")


def test_keys_live_under_one_prefix_per_mesh():
    assert KEYS.drained == b"/skymesh/prod/state/drained"
    assert KEYS.candidate("c1") == b"/skymesh/prod/election/c1"
    assert KEYS.relay("fra", "n2") == b"/skymesh/prod/relays/fra/n2"
    assert all(k.startswith(KEYS.prefix) for k in (
        KEYS.election, KEYS.relays, KEYS.audit, KEYS.fabric_keys, KEYS.route_version))
    assert not etcdstate.Keys("prod-eu").drained.startswith(KEYS.prefix)
    with pytest.raises(ValueError):
        etcdstate.Keys("no/slashes")


def test_audit_keys_sort_by_time():
    early, late = KEYS.audit_entry(999.5, "c2"), KEYS.audit_entry(1000.25, "c1")
    assert early < late and early.startswith(KEYS.audit)


@given(st.sets(st.text("abcdefgh-", min_size=1, max_size=8), max_size=6))
def test_drains_read_back_as_written(regions):
    assert etcdstate.decode_drained(KEYS.drained, etcdstate.encode_drained(regions)) == \
        frozenset(regions)


@given(st.lists(st.tuples(st.integers(1, 255), st.binary(min_size=1, max_size=32)),
                max_size=3, unique_by=lambda k: k[0]))
def test_fabric_keys_read_back_as_written(keys):
    value = etcdstate.encode_fabric_keys(keys)
    assert etcdstate.decode_fabric_keys(KEYS.fabric_keys, value) == tuple(keys)


def test_versions_and_audit_entries_read_back():
    assert etcdstate.decode_version(KEYS.route_version, etcdstate.encode_version(42)) == 42
    entry = AuditEntry(1.5, "admin/operator/alice", "drain", "fra", "maintenance")
    key = KEYS.audit_entry(1.5, "c1")
    assert etcdstate.decode_audit(key, etcdstate.encode_audit(entry)) == entry


@pytest.mark.parametrize("value,why", [
    (b"not json", "not JSON"),
    (b"[]", "expected an object"),
    (b'{"schema": 2, "regions": []}', "schema 2"),
    (b'{"schema": 1}', "no field 'regions'"),
    (b'{"schema": 1, "regions": [1]}', "list of region ids"),
])
def test_a_drain_value_that_cannot_be_trusted_is_refused_naming_its_key(value, why):
    with pytest.raises(ValueError, match=why) as e:
        etcdstate.decode_drained(KEYS.drained, value)
    assert "/skymesh/prod/state/drained" in str(e.value)


def test_bad_keys_versions_and_entries_are_refused_naming_their_key():
    with pytest.raises(ValueError, match="fabric_keys.*epoch"):
        etcdstate.decode_fabric_keys(KEYS.fabric_keys, b'{"schema": 1, "keys": [{"epoch": 0, '
                                                       b'"key": "aa"}]}')
    with pytest.raises(ValueError, match="routes/version.*non-negative"):
        etcdstate.decode_version(KEYS.route_version, b'{"schema": 1, "version": -1}')
    with pytest.raises(ValueError, match="audit.*actor"):
        etcdstate.decode_audit(KEYS.audit_entry(1, "c1"), b'{"schema": 1, "entry": {}}')


def test_the_configuration_the_leader_serves_has_a_key_each():
    import json

    from skymesh.catalogue import Region
    from skymesh.policy import Policy, Zone

    catalogue = {"fra": Region("fra", "Frankfurt", "DE", 50.1, 8.7, ("eu",),
                               {"capacity": {"relays": 2}})}
    policy = Policy({"eu": Zone("eu", frozenset({"fra"}), "EU only")})
    values = etcdstate.config_values(KEYS, catalogue, policy, {"demo": (b"\x01" * 32,)})
    assert sorted(values) == [KEYS.app("demo"), KEYS.policy, KEYS.region("fra")]
    region = json.loads(values[KEYS.region("fra")])
    assert region["schema"] == 1 and region["region"]["capacity"] == {"relays": 2}
    assert json.loads(values[KEYS.policy])["zones"] == {
        "eu": {"regions": ["fra"], "description": "EU only"}}
    assert json.loads(values[KEYS.app("demo")])["keys"] == ["01" * 32]


def route_set(n: int, seed: int = 1, drained: frozenset[str] = frozenset()):
    import numpy as np

    from controller import engine
    from skymesh.policy import Policy, Zone

    rng = np.random.default_rng(seed)
    nodes = [f"r{i:03d}" for i in range(n)]
    cost = rng.uniform(1, 200, (n, n))
    cost[rng.random((n, n)) < 0.5] = np.inf  # half the links unmeasured
    np.fill_diagonal(cost, np.inf)
    policy = Policy({"global": Zone("global", frozenset(nodes))})
    return nodes, engine.compute_costs(nodes, cost, policy, avoid=drained).zones["global"]


def same_rows(got, want) -> bool:
    """The same rows, their costs to the microsecond a link (as the wire rounds them)."""
    from dataclasses import replace

    assert [r.cost_ms for r in got] == pytest.approx([r.cost_ms for r in want], abs=0.01)
    assert [r.backup_cost_ms for r in got] == pytest.approx(
        [r.backup_cost_ms for r in want], abs=0.01)
    return [replace(r, cost_ms=0, backup_cost_ms=0) for r in got] == \
        [replace(r, cost_ms=0, backup_cost_ms=0) for r in want]


@pytest.mark.parametrize("drained", [frozenset(), frozenset({"r001"})])
def test_a_route_set_reads_back_as_the_same_routes(drained):
    nodes, z = route_set(6, drained=drained)
    value, parts = etcdstate.encode_route_set(7, z)
    assert len(parts) == 1
    assert etcdstate.route_set_version(KEYS.route_set("global"), value) == (7, 1)
    version, back = etcdstate.decode_route_set(KEYS.route_set("global"), value, parts)
    assert version == 7 and back.nodes == nodes and back.members == z.members
    for src in nodes:
        assert same_rows(back.rows(src), z.rows(src))
    assert back.unreachable_reason("r000", "r999") == z.unreachable_reason("r000", "r999")


def test_a_large_route_set_goes_in_parts_and_reads_back_only_whole(monkeypatch):
    monkeypatch.setattr(etcdstate, "ROUTE_PART_BYTES", 2000)
    nodes, z = route_set(40, seed=2)
    value, parts = etcdstate.encode_route_set(9, z)
    assert len(parts) > 2 and all(len(p) <= 2000 for p in parts)
    key = KEYS.route_set("global")
    assert same_rows(etcdstate.decode_route_set(key, value, parts)[1].rows("r003"),
                     z.rows("r003"))
    with pytest.raises(ValueError, match="parts of version 9 are not all there"):
        etcdstate.decode_route_set(key, value, parts[:-1])
    with pytest.raises(ValueError, match="not all there"):
        etcdstate.decode_route_set(key, value, [parts[1], parts[0], *parts[2:]])
    with pytest.raises(ValueError, match="schema"):
        etcdstate.decode_route_set(key, value.replace(b'"schema":1', b'"schema":2'), parts)


def test_route_set_parts_sort_by_version_under_their_zone():
    assert KEYS.route_part("eu", 9, 1) < KEYS.route_part("eu", 10, 0) < \
        KEYS.route_part("eu", 10, 1)
    assert KEYS.route_part("eu", 10, 0).startswith(KEYS.zone_parts("eu"))
    assert not KEYS.route_part("eu-west", 1, 0).startswith(KEYS.zone_parts("eu"))
