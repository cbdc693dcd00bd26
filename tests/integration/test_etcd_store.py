"""controller/etcdstore.py and controller/leadership.py against a real etcd server (Debian's
etcd-server on free loopback ports, mutual TLS): state kept first and read back, writes
fenced by the leader's key, route versions reserved so that they only grow across leaders,
and leadership lost when etcd goes away and taken up again when it returns."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from controller import etcdstate
from controller.etcd import Etcd
from controller.etcdstate import Keys
from controller.etcdstore import VERSION_BLOCK, EtcdStore, StoreUnavailable
from controller.leadership import Leadership
from controller.store import AuditEntry

MESH = "test-mesh"
TTL_S = 2.0


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def replica(c, tls, name: str) -> Leadership:
    etcd = Etcd(c.endpoints, tls)
    keys = Keys(MESH)
    store = EtcdStore(etcd, keys, name)
    lead = Leadership(etcd, keys, name, f"127.0.0.1:7{len(name)}00", store, TTL_S)
    lead.began = store.open
    return lead


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def test_state_kept_first_and_behind_reads_back_in_a_new_term(cluster):
    c, tls = cluster

    async def main():
        a = replica(c, tls, "c1")
        assert await a.wait_leading(10)
        entry = AuditEntry(1000.0, "admin/operator/olga", "drain", "fra")
        await a.store.keep_first(drained={"fra"}, audit=[entry])
        # the core's writes of the same values cost nothing; others are written behind
        a.store.save_drained({"fra"})
        a.store.append_audit(entry)
        a.store.save_fabric_keys([(2, b"k2"), (1, b"k1")])
        refused = AuditEntry(1000.0, "admin/viewer/vic", "denied", "Drain", "viewer")
        a.store.append_audit(refused)  # the same instant: a key of its own
        await a.store.settle()
        await a.resign()

        b = replica(c, tls, "c2")
        assert await b.wait_leading(10)
        state = b.store.load({"fra", "ams"})
        assert state.drained == {"fra"} and state.fabric_keys == ((2, b"k2"), (1, b"k1"))
        assert b.store.audit() == [entry, refused]
        await b.resign()
        for r in (a, b):
            await r.etcd.close()

    run(main())


def test_writes_behind_go_in_few_transactions_in_order(cluster):
    c, tls = cluster

    async def main():
        a = replica(c, tls, "c1")
        assert await a.wait_leading(10)
        _, before = await a.etcd.get_prefix(a.keys.prefix)
        for i in range(250):  # a new leader taking 250 relays over
            a.store.relay_up(f"r{i:03d}", "n1", "c1", f"127.0.0.1:{i + 1}", 5.0)
        a.store.relay_down("r007", "n1")  # after its up: a transaction of its own
        a.store.relay_up("r007", "n1", "c2", "127.0.0.1:8", 6.0)
        await a.store.settle()
        kvs, after = await a.etcd.get_prefix(a.keys.relays)
        assert len(kvs) == 250
        assert etcdstate.decode_relay(kvs[7].key, kvs[7].value)["replica"] == "c2"
        assert after - before <= 6, after - before  # a revision a transaction
        await a.resign()
        await a.etcd.close()

    run(main())


def test_a_deposed_leader_cannot_write_and_versions_only_grow(cluster):
    c, tls = cluster

    async def main():
        a, b = replica(c, tls, "c1"), replica(c, tls, "c2")
        assert await a.wait_leading(10)
        first = a.store.reserved
        assert first >= VERSION_BLOCK
        # b campaigns but does not lead while a's lease is alive
        assert not await b.wait_leading(1.0)
        assert b.leader().replica == "c1"
        # a's lease is let go behind its back (as when etcd expired it during a pause):
        # a still believes it leads, b takes over
        await a.etcd.revoke(a.campaign.lease)
        assert await b.wait_leading(10)
        assert b.floor == first and b.store.reserved == first + VERSION_BLOCK
        await b.store.keep_first(drained={"ams"})
        # a's late write is refused by the fence, and a learns it no longer leads
        assert a.leading
        with pytest.raises(StoreUnavailable, match="no longer leads"):
            await a.store.keep_first(drained={"fra"})
        assert not a.leading and a.store.fence is None
        kv, _ = await b.etcd.get(b.keys.drained)
        assert etcdstate.decode_drained(kv.key, kv.value) == {"ams"}
        # a writes behind nothing either
        a.store.save_drained({"lis"})
        await a.store.settle()
        kv, _ = await b.etcd.get(b.keys.drained)
        assert etcdstate.decode_drained(kv.key, kv.value) == {"ams"}
        for r in (a, b):
            await r.resign()
            await r.store.close()
            await r.etcd.close()

    run(main())


def test_a_replica_that_resigns_hands_over_at_once(cluster):
    c, tls = cluster

    async def main():
        a, b = replica(c, tls, "c1"), replica(c, tls, "c2")
        assert await a.wait_leading(10)
        task = asyncio.get_running_loop().create_task(b.run())
        try:
            await until(lambda: b.leader() is not None, 5, "b sees the election")
            assert not b.leading
            start = time.monotonic()
            await a.resign()
            await until(lambda: b.leading, TTL_S, "b leads")
            assert time.monotonic() - start < TTL_S  # not after a's lease expired
            assert b.view().leader == "c2"
            assert {r.id for r in b.view().replicas} == {"c2"}
        finally:
            task.cancel()
            await b.resign()
            for r in (a, b):
                await r.etcd.close()

    run(main())


def test_leading_lapses_while_etcd_is_away_and_comes_back_with_it(cluster):
    c, tls = cluster

    async def main():
        a = replica(c, tls, "c1")
        ended = []
        a.ended = lambda: ended.append(time.monotonic())
        task = asyncio.get_running_loop().create_task(a.run())
        try:
            await until(lambda: a.leading, 10, "a leads")
            fence = a.store.fence
            stopped = time.monotonic()
            await asyncio.to_thread(c.stop, c.members[0])
            # it stops before etcd could have let its key go: within the TTL of the last
            # renewal, which was asked at most a third of the TTL before etcd stopped
            await until(lambda: not a.leading, TTL_S + 1, "a stops leading")
            assert ended and ended[0] - stopped <= TTL_S + 0.5
            assert a.store.fence is None and not a.view().store_healthy
            with pytest.raises(StoreUnavailable, match="does not lead"):
                await a.store.keep_first(drained={"fra"})
            await asyncio.to_thread(c.restart, c.members[0])
            await until(lambda: a.leading, 20, "a leads again")
            # etcd gives its leases their TTL again when it restarts: the key, and the
            # fence, may be the same; anyone else's term in between would have replaced it
            assert a.store.fence is not None and a.store.fence.key == fence.key
            await a.store.keep_first(drained={"fra"})
            assert len(ended) == 1
        finally:
            task.cancel()
            await a.resign()
            await a.etcd.close()

    run(main(), timeout=90)


def test_losing_one_member_of_three_goes_unnoticed(tmp_path):
    from support import controller_tls, mesh_ca

    from skymesh import certs
    from skymesh.cli import etcdserver

    ca = mesh_ca(tmp_path / "ca")
    c = etcdserver.start(tmp_path / "etcd", etcdserver.server_tls(tmp_path / "ca", ca,
                                                                   ca / certs.BUNDLE),
                         members=3)
    tls = controller_tls(ca)

    async def main():
        a = replica(c, tls, "c1")
        ended = []
        a.ended = lambda: ended.append(1)
        task = asyncio.get_running_loop().create_task(a.run())
        try:
            await until(lambda: a.leading, 10, "a leads")
            # the member a's client speaks to goes, as a lost machine would
            await asyncio.to_thread(c.stop, c.members[0], signal.SIGKILL)
            for i in range(5):  # writes go on through the others; leading never lapses
                await a.store.keep_first(drained={f"r{i}"})
                await asyncio.sleep(TTL_S / 2)
            assert a.leading and not ended
            kv, _ = await a.etcd.get(a.keys.drained)
            assert etcdstate.decode_drained(kv.key, kv.value) == {"r4"}
        finally:
            task.cancel()
            await a.resign()
            await a.etcd.close()

    try:
        run(main(), timeout=90)
    finally:
        c.stop_all()


def test_the_mirror_follows_etcd_and_reads_it_again_after_etcd_comes_back(cluster):
    from controller.mirror import EtcdMirror
    from skymesh.cli import etcdserver

    c, tls = cluster

    async def main():
        a = replica(c, tls, "c1")
        assert await a.wait_leading(10)
        mirror = EtcdMirror(Etcd(c.endpoints, tls), Keys(MESH))
        task = asyncio.get_running_loop().create_task(mirror.run())
        try:
            entry = AuditEntry(5.0, "admin/operator/olga", "drain", "fra")
            await a.store.keep_first(drained={"fra"}, audit=[entry])
            a.store.relay_up("fra", "n1", "c1", "127.0.0.1:9", 5.0)
            await a.store.settle()
            await until(lambda: mirror.drained == {"fra"} and ("fra", "n1") in mirror.relays,
                        5, "the mirror following")
            assert mirror.audit() == [entry] and mirror.reserved == a.store.reserved
            a.store.relay_down("fra", "n1")
            await a.store.settle()
            await until(lambda: not mirror.relays, 5, "a deletion followed")
            # etcd goes and comes back: the mirror reads it again and follows on
            await asyncio.to_thread(c.stop, c.members[0])
            await asyncio.to_thread(c.restart, c.members[0])
            await asyncio.to_thread(etcdserver.wait_ready, c, tls, 20)
            keys = Keys(MESH)
            await a.etcd.put(keys.drained, etcdstate.encode_drained({"ams"}))
            await until(lambda: mirror.drained == {"ams"}, 10, "the mirror back")
        finally:
            task.cancel()
            await a.resign()
            await a.etcd.close()
            await mirror.etcd.close()

    run(main(), timeout=90)
