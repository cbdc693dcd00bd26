"""controller/etcd.py against real etcd servers (Debian's etcd-server, started on free loopback
ports with mutual TLS by skymesh/cli/etcdserver.py): keys, fenced transactions, leases that
expire, watches that resume and report compaction, several endpoints, and clients without a
certificate of the mesh refused."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from support import controller_tls, mesh_ca

from controller import etcd
from skymesh import certs, identity
from skymesh.cli import etcdserver
from skymesh.net.tls import TlsFiles


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_keys_prefixes_and_revisions(cluster):
    c, tls = cluster

    async def main():
        e = etcd.Etcd(c.endpoints, tls)
        try:
            r1 = await e.put(b"/m/a", b"1")
            r2 = await e.put(b"/m/b", b"2")
            await e.put(b"/n/x", b"other prefix")
            kv, rev = await e.get(b"/m/a")
            assert kv.value == b"1" and kv.create_revision == r1 and rev >= r2
            assert (await e.get(b"/m/none"))[0] is None
            kvs, _ = await e.get_prefix(b"/m/")
            assert [(k.key, k.value) for k in kvs] == [(b"/m/a", b"1"), (b"/m/b", b"2")]
            old, _ = await e.get_prefix(b"/m/", revision=r1)  # as it was then
            assert [k.key for k in old] == [b"/m/a"]
            assert await e.delete(b"/m/", prefix=True) == 2
            assert (await e.get_prefix(b"/m/"))[0] == []
        finally:
            await e.close()
    run(main())


def test_a_write_fenced_by_a_key_fails_once_the_key_was_recreated(cluster):
    """The leader's fence: a transaction guarded by its election key's create revision
    succeeds while that key stands, and fails once it was deleted and written again (a
    newer leader), without writing anything."""
    c, tls = cluster

    async def main():
        e = etcd.Etcd(c.endpoints, tls)
        try:
            created = await e.put(b"/e/leader", b"c1")
            ok = await e.txn([etcd.created_at(b"/e/leader", created)],
                             [etcd.put_op(b"/s/version", b"7")])
            assert ok.succeeded
            await e.delete(b"/e/leader")
            await e.put(b"/e/leader", b"c2")  # someone else leads now
            late = await e.txn([etcd.created_at(b"/e/leader", created)],
                               [etcd.put_op(b"/s/version", b"5")], [etcd.range_op(b"/e/leader")])
            assert not late.succeeded
            assert (await e.get(b"/s/version"))[0].value == b"7"
            assert late.responses[0].response_range.kvs[0].value == b"c2"
            # absent(): written only if nobody has the key
            assert (await e.txn([etcd.absent(b"/e/new")], [etcd.put_op(b"/e/new", b"x")])
                    ).succeeded
            assert not (await e.txn([etcd.absent(b"/e/new")], [etcd.put_op(b"/e/new", b"y")])
                        ).succeeded
        finally:
            await e.close()
    run(main())


def test_a_lease_kept_alive_keeps_its_keys_and_one_let_go_loses_them(cluster):
    c, tls = cluster

    async def main():
        e = etcd.Etcd(c.endpoints, tls)
        try:
            kept, dropped = await e.grant(2), await e.grant(2)
            await e.put(b"/live/kept", b"", lease=kept)
            await e.put(b"/live/dropped", b"", lease=dropped)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while (await e.get(b"/live/dropped"))[0] is not None:
                assert loop.time() < deadline, "the lease never expired"
                assert await e.keep_alive(kept) > 0
                await asyncio.sleep(0.5)
            assert (await e.get(b"/live/kept"))[0] is not None
            assert await e.keep_alive(dropped) == 0  # expired: says so, no error
            await e.revoke(kept)
            assert (await e.get(b"/live/kept"))[0] is None
            await e.revoke(kept)  # twice: no error
        finally:
            await e.close()
    run(main())


def test_a_watch_sees_changes_from_its_revision_and_reports_compaction(cluster):
    c, tls = cluster

    async def main():
        e = etcd.Etcd(c.endpoints, tls)
        try:
            start = await e.put(b"/w/a", b"1")
            await e.put(b"/w/b", b"2")
            await e.delete(b"/w/a")
            await e.put(b"/x/ignored", b"")
            seen, reached = [], 0
            async for revision, events in e.watch(b"/w/", start):
                seen += [(ev.deleted, ev.kv.key, ev.kv.value) for ev in events]
                reached = revision
                if len(seen) >= 3:
                    break
            assert seen == [(False, b"/w/a", b"1"), (False, b"/w/b", b"2"), (True, b"/w/a", b"")]
            assert reached > start
            last = await e.put(b"/w/c", b"3")
            await e.compact(last)
            with pytest.raises(etcd.Compacted) as compacted:
                async for _ in e.watch(b"/w/", start):
                    pass
            assert compacted.value.revision >= last
            with pytest.raises(etcd.Compacted):
                await e.get_prefix(b"/w/", revision=start)
        finally:
            await e.close()
    run(main())


def test_an_endpoint_that_does_not_answer_is_left_for_the_next(tmp_path: Path):
    ca = mesh_ca(tmp_path / "ca")
    c = etcdserver.start(tmp_path / "etcd", etcdserver.server_tls(tmp_path / "ca", ca,
                                                                   ca / certs.BUNDLE))
    tls = controller_tls(ca)
    dead = f"127.0.0.1:{etcdserver.free_port()}"

    async def main():
        e = etcd.Etcd([dead, *c.endpoints], tls, timeout_s=1.0)
        try:
            assert await e.put(b"/k", b"v") > 0  # after trying the dead one
            assert e.endpoints[e.at] == c.endpoints[0]
            c.stop(c.members[0], signal.SIGKILL)
            with pytest.raises(etcd.EtcdUnavailable, match="unavailable") as down:
                await e.get(b"/k")
            assert dead in str(down.value) and c.endpoints[0] in str(down.value)
        finally:
            await e.close()
    try:
        run(main())
    finally:
        c.stop_all()


def test_a_client_without_a_certificate_of_the_mesh_is_refused(cluster, tmp_path: Path):
    c, _ = cluster
    stranger = mesh_ca(tmp_path / "other", mesh="other-mesh")
    cert, key = certs.issue_identity(stranger, stranger,
                                     identity.controller("other-mesh", "c9"))
    # it trusts the server (the mesh's bundle) but presents another mesh's certificate
    tls = TlsFiles(c.tls.ca, cert, key)

    async def main():
        e = etcd.Etcd(c.endpoints, tls, timeout_s=1.0)
        try:
            with pytest.raises(etcd.EtcdError):
                await e.get(b"/k")
        finally:
            await e.close()
    run(main())


def test_endpoints_are_parsed_from_a_store_url():
    assert etcd.endpoints_of("etcd://a:1,b,[::1]:3") == ["a:1", "b:2379", "[::1]:3"]
    for bad in ("http://a:1", "etcd://", "etcd://a:x", "etcd://a:1/path"):
        with pytest.raises(ValueError, match="etcd"):
            etcd.endpoints_of(bad)
    assert etcd.prefix_end(b"/m/") == b"/m0" and etcd.prefix_end(b"a\xff") == b"b"
