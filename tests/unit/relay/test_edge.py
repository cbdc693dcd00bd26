"""The QUIC edge and the SDK, over real aioquic connections on loopback."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest
from support import take

from relay.edge import start_edge
from sdk.client import MAX_MEDIA_PAYLOAD, connect
from sdk.errors import TokenRefused
from skymesh import edgeproto
from skymesh.certs import ensure_dev_ca, issue_cert
from skymesh.token import ERROR_CODES, generate_key, issue, public_key_of

APP, APP_KEY = "app1", generate_key()  # the app's private key; the edge gets only the public key
APP_KEYS = {APP: (public_key_of(APP_KEY),)}
ALL = ("join", "publish-media", "publish-messages")
DEADLINE = 5.0


@pytest.fixture
def certs(tmp_path):
    ca_cert, _ = ensure_dev_ca(tmp_path / "ca")
    cert, key = issue_cert(tmp_path / "edge", tmp_path / "ca", "edge", ["127.0.0.1", "localhost"])
    return ca_cert, cert, key


def token(channel="c1", uid="u", zone="eu", privileges=ALL, key=APP_KEY, ttl=3600,
          now=None):
    return issue(APP, key, channel, uid, zone, privileges, ttl, now=now)


async def _edge(certs, **limits):
    _, cert, key = certs
    return await start_edge("127.0.0.1", 0, cert, key, APP_KEYS, "amsterdam",
                            {"eu", "global"}, **limits)


def test_fan_out_media_and_messages(certs):
    async def main():
        server, edge = await _edge(certs)
        ca = certs[0]
        try:
            async with AsyncExitStack() as stack:
                def session(uid, channel="c1"):
                    return stack.enter_async_context(connect(
                        "127.0.0.1", edge.port, token(channel=channel, uid=uid), channel, ca))

                pub = await session("pub")
                subs = [await session("sub1"), await session("sub2")]
                other = await session("other", channel="c2")
                for s in (pub, *subs, other):
                    joined = await asyncio.wait_for(s.join(), DEADLINE)
                    assert joined["region"] == "amsterdam"
                assert edge.counters["joined"] == 4

                frames = [f"frame-{i}".encode() for i in range(20)]
                for f in frames:
                    pub.publish_media(f)
                for s in subs:
                    got = await asyncio.wait_for(take(s.media(), len(frames)), DEADLINE)
                    assert got == frames

                for i in range(20):
                    assert await pub.send_message(f"m{i}") == i + 1
                for s in subs:
                    got = await asyncio.wait_for(take(s.messages(), 20), DEADLINE)
                    assert [(m.sender, m.id, m.body) for m in got] == [
                        ("pub", i + 1, f"m{i}") for i in range(20)]
                # once: the next thing each subscriber sees is the next message, no repeat
                await pub.send_message("marker")
                for s in subs:
                    [m] = await asyncio.wait_for(take(s.messages(), 1), DEADLINE)
                    assert (m.id, m.body) == (21, "marker")

                # the other channel got nothing: only the two subscribers were sent anything
                assert edge.counters["media_forwarded"] == 2 * len(frames)
                assert edge.counters["messages"] == 21
                assert edge.counters["media_dropped"] == 0
                assert not other.shared.media and not other.shared.inbox.ready
                assert edge.counters["refused"] == 0
        finally:
            server.close()

    asyncio.run(main())


def _refusal(certs, tok, channel="c1", publish=False):
    async def main():
        server, edge = await _edge(certs)
        try:
            async with connect("127.0.0.1", edge.port, tok, channel, certs[0]) as s:
                with pytest.raises(TokenRefused) as info:
                    await asyncio.wait_for(s.join(), DEADLINE)
                    if publish:
                        s.publish_media(b"not allowed")
                        await asyncio.wait_for(s.wait_closed(), DEADLINE)
            assert edge.counters["refused"] == 1
            assert edge.counters["media_forwarded"] == 0
            return info.value
        finally:
            server.close()

    return asyncio.run(main())


@pytest.mark.parametrize("case, code", [
    ("forged", "bad-signature"),
    ("expired", "expired"),
    ("wrong-channel", "wrong-channel"),
    ("wrong-zone", "wrong-zone"),
    ("join-only", "missing-privilege"),
])
def test_refused_tokens(certs, case, code):
    publish = False
    if case == "forged":
        tok = token(key=generate_key())
    elif case == "expired":
        tok = token(ttl=60, now=int(time.time()) - 3600)
    elif case == "wrong-channel":
        tok = token(channel="elsewhere")
    elif case == "wrong-zone":
        tok = token(zone="cn")
    else:
        tok, publish = token(privileges=("join",)), True
    err = _refusal(certs, tok, publish=publish)
    assert err.code == code
    assert err.number == ERROR_CODES[code]
    assert err.reason
    if case == "wrong-zone":
        assert "cn" in err.reason


def test_oversized_datagram_dropped_and_edge_keeps_serving(certs):
    async def main():
        server, edge = await _edge(certs, max_media_bytes=1000)
        ca = certs[0]
        try:
            async with (connect("127.0.0.1", edge.port, token(uid="p"), "c1", ca) as pub,
                        connect("127.0.0.1", edge.port, token(uid="s"), "c1", ca) as sub):
                await asyncio.wait_for(pub.join(), DEADLINE)
                await asyncio.wait_for(sub.join(), DEADLINE)
                big = b"x" * 1050
                assert len(big) <= MAX_MEDIA_PAYLOAD
                pub.publish_media(big)
                pub.publish_media(b"small")
                [got] = await asyncio.wait_for(take(sub.media(), 1), DEADLINE)
                assert got == b"small"
                assert edge.counters["media_dropped"] == 1
                assert edge.counters["media_forwarded"] == 1
                # still serving: a new session joins and messages flow
                await pub.send_message("after")
                [m] = await asyncio.wait_for(take(sub.messages(), 1), DEADLINE)
                assert m.body == "after"
            async with connect("127.0.0.1", edge.port, token(uid="n"), "c1", ca) as late:
                await asyncio.wait_for(late.join(), DEADLINE)
            assert edge.counters["joined"] == 3
        finally:
            server.close()

    asyncio.run(main())


def test_per_session_datagram_queue_is_capped(certs):
    async def main():
        server, edge = await _edge(certs, max_queued_datagrams=4)
        ca = certs[0]
        try:
            async with (connect("127.0.0.1", edge.port, token(uid="p"), "c1", ca) as pub,
                        connect("127.0.0.1", edge.port, token(uid="s"), "c1", ca) as sub):
                await asyncio.wait_for(pub.join(), DEADLINE)
                await asyncio.wait_for(sub.join(), DEADLINE)
                [session] = [s for s in edge.members(("eu", "app1/c1")) if s.grant.uid == "s"]
                for _ in range(10):  # queued directly, without transmitting in between
                    session._quic.send_datagram_frame(edgeproto.MEDIA_DATAGRAM + b"stale")
                session.send_media(edgeproto.MEDIA_DATAGRAM + b"fresh-0")
                assert len(session._quic._datagrams_pending) <= 4
                assert edge.counters["media_dropped"] >= 7
                got = await asyncio.wait_for(take(sub.media(), 4), DEADLINE)
                assert got[-1] == b"fresh-0"
        finally:
            server.close()

    asyncio.run(main())


def test_renewal_extends_the_session_and_expiry_ends_it(certs):
    async def main():
        server, edge = await _edge(certs)
        ca = certs[0]
        try:
            # a 2 s token: the edge warns after ~1 s (half the lifetime), closes at expiry
            async with connect("127.0.0.1", edge.port, token(uid="r", ttl=2), "c1", ca) as s:
                joined = await asyncio.wait_for(s.join(), DEADLINE)
                assert joined["expires_at"] - time.time() <= 2
                await asyncio.wait_for(_until(lambda: s.token_expiring_at is not None),
                                       DEADLINE)
                assert s.token_expiring_at == joined["expires_at"]
                reply = await asyncio.wait_for(s.renew(token(uid="r", ttl=3600)), DEADLINE)
                assert reply["expires_at"] > time.time() + 3000
                assert s.token_expiring_at is None
                assert edge.counters["renewed"] == 1
            async with connect("127.0.0.1", edge.port, token(uid="x", ttl=2), "c1", ca) as s:
                await asyncio.wait_for(s.join(), DEADLINE)
                with pytest.raises(TokenRefused) as info:
                    await asyncio.wait_for(s.wait_closed(), DEADLINE)
                assert info.value.code == "expired"
                assert "renewed" in info.value.reason
        finally:
            server.close()

    asyncio.run(main())


def test_a_token_already_within_its_notice_is_warned_of_at_once(certs):
    """Issued 100 s ago for 120 s: 20 s left, less than the 30 s notice."""
    async def main():
        server, edge = await _edge(certs)
        try:
            old = token(uid="late", ttl=120, now=int(time.time()) - 100)
            async with connect("127.0.0.1", edge.port, old, "c1", certs[0]) as s:
                joined = await asyncio.wait_for(s.join(), DEADLINE)
                await asyncio.wait_for(_until(lambda: s.token_expiring_at is not None),
                                       DEADLINE)
                assert s.token_expiring_at == joined["expires_at"]
        finally:
            server.close()

    asyncio.run(main())


@pytest.mark.parametrize("case, code", [
    ("other-user", "malformed"),
    ("forged", "bad-signature"),
    ("other-channel", "wrong-channel"),
])
def test_bad_renewal_ends_the_session(certs, case, code):
    bad = {"other-user": lambda: token(uid="someone-else"),
           "forged": lambda: token(uid="r", key=generate_key()),
           "other-channel": lambda: token(uid="r", channel="c9")}[case]()

    async def main():
        server, edge = await _edge(certs)
        try:
            async with connect("127.0.0.1", edge.port, token(uid="r"), "c1", certs[0]) as s:
                await asyncio.wait_for(s.join(), DEADLINE)
                with pytest.raises(TokenRefused) as info:
                    await asyncio.wait_for(s.renew(bad), DEADLINE)
                assert info.value.code == code
            assert edge.counters["renewed"] == 0 and edge.counters["refused"] == 1
            assert not edge.channels  # the session left its channel
        finally:
            server.close()

    asyncio.run(main())


def test_message_size_is_checked_before_sending(certs):
    async def main():
        server, edge = await _edge(certs)
        try:
            async with connect("127.0.0.1", edge.port, token(uid="r"), "c1", certs[0]) as s:
                await asyncio.wait_for(s.join(), DEADLINE)
                with pytest.raises(ValueError, match="at most"):
                    await s.send_message("é" * 600)
                assert await s.send_message("é" * 450) == 1
        finally:
            server.close()

    asyncio.run(main())


async def _until(predicate, step=0.01):
    while not predicate():
        await asyncio.sleep(step)


def _served_certificate(session) -> bytes:
    """The DER certificate the edge presented to this client session."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return session._p._quic.tls._peer_certificate.public_bytes(Encoding.DER)


def test_a_reissued_certificate_is_served_to_new_sessions_and_open_ones_carry_on(certs,
                                                                                 tmp_path):
    from relay.edge import watch_certificate

    async def main():
        server, edge = await _edge(certs)
        ca, cert, key = certs
        watcher = asyncio.create_task(watch_certificate(server, cert, key, interval_s=0.02))
        try:
            async with AsyncExitStack() as stack:
                def session(uid):
                    return stack.enter_async_context(connect(
                        "127.0.0.1", edge.port, token(uid=uid), "c1", ca))

                before = await session("before")
                await asyncio.wait_for(before.join(), DEADLINE)
                first = _served_certificate(before)
                issue_cert(tmp_path / "edge", tmp_path / "ca", "edge", ["127.0.0.1", "localhost"])
                deadline = time.monotonic() + DEADLINE
                while True:  # the watcher replaces the configuration within its interval
                    after = await session(f"after-{time.monotonic()}")
                    await asyncio.wait_for(after.join(), DEADLINE)
                    if _served_certificate(after) != first:
                        break
                    assert time.monotonic() < deadline, "the new certificate was never served"
                    await asyncio.sleep(0.05)
                # the session from before the reissue is still open and still delivers
                await after.send_message("still there?")
                [m] = await asyncio.wait_for(take(before.messages(), 1), DEADLINE)
                assert m.body == "still there?"
        finally:
            watcher.cancel()
            server.close()

    asyncio.run(main())


def test_sessions_beyond_the_limit_per_address_are_closed_and_counted(certs):
    from relay.edgesession import EdgeLimits
    from sdk.errors import RateLimited
    from skymesh import edgeproto

    async def main():
        server, edge = await _edge(certs, limits=EdgeLimits(sessions_per_source=2))
        ca = certs[0]
        try:
            async with AsyncExitStack() as stack:
                def session(uid):
                    return stack.enter_async_context(connect(
                        "127.0.0.1", edge.port, token(uid=uid), "c1", ca))

                first = await session("a")
                await asyncio.wait_for(first.join(), DEADLINE)
                second = await session("b")
                await asyncio.wait_for(second.join(), DEADLINE)
                with pytest.raises(RateLimited) as e:
                    async with connect("127.0.0.1", edge.port, token(uid="c"), "c1",
                                       ca) as third:
                        await asyncio.wait_for(third.join(), DEADLINE)
                assert e.value.error_code == edgeproto.TOO_MANY_SESSIONS
                assert e.value.reason == edgeproto.too_many_sessions(2)
                assert edge.counters["refused_sessions"] == 1
                second.close()
                await asyncio.wait_for(second.wait_closed(), DEADLINE)
                deadline = time.monotonic() + DEADLINE
                while edge.sources.open.get("127.0.0.1") != 1:  # released when it ended
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                again = await session("d")
                assert (await asyncio.wait_for(again.join(), DEADLINE))["uid"] == "d"
        finally:
            server.close()

    asyncio.run(main())


def test_a_publisher_flooding_messages_is_closed_and_the_others_keep_theirs(certs):
    from relay.edgesession import EdgeLimits
    from sdk.errors import RateLimited

    async def main():
        # refilled so slowly that however long the flood takes, 20 is all it gets
        server, edge = await _edge(certs, limits=EdgeLimits(messages_per_s=0.01,
                                                            messages_burst=20.0))
        ca = certs[0]
        try:
            async with AsyncExitStack() as stack:
                def session(uid):
                    return stack.enter_async_context(connect(
                        "127.0.0.1", edge.port, token(uid=uid), "c1", ca))

                flood, calm, sub = await session("flood"), await session("calm"), \
                    await session("sub")
                for s in (flood, calm, sub):
                    await asyncio.wait_for(s.join(), DEADLINE)
                for i in range(100):
                    await flood.send_message(f"spam {i}")
                with pytest.raises(RateLimited):
                    await asyncio.wait_for(flood.wait_closed(), DEADLINE)
                await calm.send_message("hello")
                got = await asyncio.wait_for(take(sub.messages(), 21), DEADLINE)
                assert [m.sender for m in got] == ["flood"] * 20 + ["calm"]
                assert edge.counters["refused_rate"] == 1
        finally:
            server.close()

    asyncio.run(main())


def test_lines_that_come_close_together_leave_in_one_write(certs):
    """Messages to a session 5 ms apart (a fast stream of gifts) are held and written
    together, at most one write per WRITE_GAP_S; the first after a quiet spell at once. All
    arrive, in order."""
    from relay.edge import WRITE_GAP_S

    async def main():
        server, edge = await _edge(certs)
        ca = certs[0]
        try:
            async with connect("127.0.0.1", edge.port, token(uid="s"), "c1", ca) as sub:
                await asyncio.wait_for(sub.join(), DEADLINE)
                [session] = edge.members(("eu", "app1/c1"))
                await asyncio.sleep(WRITE_GAP_S)  # a quiet spell (a bound, not a condition)
                loop = asyncio.get_running_loop()
                first = session._quic._packet_number
                started = loop.time()
                for i in range(20):
                    session.send_line(edgeproto.encode_line(edgeproto.deliver(
                        "host", i + 1, f"gift {i}", stream="r:host", seq=i + 1)))
                    if i == 0:
                        assert session._quic._packet_number == first  # not yet: next turn
                        await asyncio.sleep(0)
                        assert session._quic._packet_number == first + 1  # the first, at once
                    await asyncio.sleep(0.005)
                spent = loop.time() - started
                got = await asyncio.wait_for(take(sub.messages(), 20), DEADLINE)
                assert [m.body for m in got] == [f"gift {i}" for i in range(20)]
                # one write for the first, then one per WRITE_GAP_S of the burst (and a spare
                # for a flush at its end), not twenty
                writes = session._quic._packet_number - first
                assert writes <= 2 + spent / WRITE_GAP_S + 1, (writes, spent)
                assert writes < 20
        finally:
            server.close()

    asyncio.run(main())


def test_a_big_channels_comments_are_spread_over_the_tick(certs):
    """A tick's comments go to FANOUT_SLICE sessions at once; the rest of a big channel's
    sessions get them later in the same tick, slice by slice, every one exactly once."""
    from relay.danmaku import TICK_S
    from relay.edge import FANOUT_SLICE

    class Viewer:
        def __init__(self):
            self.got: list[tuple[float, list[bytes]]] = []

        def send_comments(self, datagrams):
            self.got.append((asyncio.get_running_loop().time(), datagrams))

    async def main():
        server, edge = await _edge(certs)
        try:
            viewers = [Viewer() for _ in range(2 * FANOUT_SLICE + 50)]
            batch = edgeproto.comments_datagrams([("v1", "好看")])
            start = asyncio.get_running_loop().time()
            edge.show_comments(viewers, batch)
            assert sum(bool(v.got) for v in viewers) == FANOUT_SLICE  # the first slice now
            deadline = start + 10 * TICK_S
            while not all(v.got for v in viewers):
                assert asyncio.get_running_loop().time() < deadline, "slices never came"
                await asyncio.sleep(0.01)
            assert all(len(v.got) == 1 and v.got[0][1] == batch for v in viewers)
            last = max(v.got[0][0] for v in viewers)
            assert last - start < TICK_S + 0.5  # within the tick (and a loaded machine's slack)
            assert last - start >= TICK_S / 3 - 0.02  # the third slice, spread: not at once
        finally:
            server.close()

    asyncio.run(main())
