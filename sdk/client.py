"""The skymesh client SDK: a QUIC session to an edge relay, which moves to another edge by
itself when its edge dies or is drained.

    async with connect(token=token, channel="room", ca_file="ca.pem",
                       resolvers=["resolver.example:7444"], resolver_ca=ca) as s:
        await s.join()
        s.publish_media(b"frame")
        await s.send_message("hello")
        async for frame in s.media():
            ...

Without a host, `connect` asks the resolvers for the best edges (the shipped `Fallback` when
none answers), races QUIC handshakes to the top three and joins the fastest. With a host and
port, it connects there (and moves only to the `candidates` or resolvers it is also given).

Moving: the session notices its edge is gone when the connection closes (other than by a
refusal of its token or a rate limit), when the edge says "moving" (its region was drained),
or when nothing has come from the edge for `liveness_s` although the session pinged it. It
then finds the edges again without the lost one, connects to the fastest and joins with a
fresh join that names, for each publisher's stream, the last message it delivered; the new
edge has the missed ones sent again and the session hands every message on once and in order
(sdk/inbox.py). Each move is recorded in `Session.migrations` with how long it took and the
gap in media it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aioquic.asyncio import connect as quic_connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)

from sdk.e2ee import OVERHEAD, E2EEError, SFrame
from sdk.edges import Candidate, EdgeFinder, Fallback
from sdk.errors import (
    ConnectionClosed,
    ControllerUnavailable,
    EdgeUnavailable,
    RateLimited,
    RegionDrained,
    SkymeshError,
    TokenRefused,
)
from sdk.history import HistoryPage, Pages
from sdk.inbox import Inbox, Message
from skymesh import edgeproto
from skymesh.edgeproto import ALPN, MAX_DATAGRAM_FRAME_SIZE, MAX_MEDIA_PAYLOAD
from skymesh.edgeproto import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # the SDK's API too
from skymesh.net import quic

MAX_RECEIVED_MEDIA = 256  # received datagrams kept for `media()`; the oldest are dropped
LIVENESS_S = 1.5  # an edge silent this long (pinged meanwhile) is taken for dead
MOVE_TIMEOUT_S = 30.0  # a session that finds no edge to move to in this long closes
MAX_UNSETTLED = 4096  # messages kept to send again after a move
MAX_PRESENCE_EVENTS = 1000  # joins and leaves kept for `presence_events`
MAX_RECEIPTS = 1000  # receipts kept for `receipts`
MAX_RECEIVED_COMMENTS = 1000  # comments kept for `comments()`; the oldest are dropped
OVERLAP_S = 2.0  # a drained edge's connection is kept this long at most after moving
WATCH_S = 0.1  # how often a session looks at its edge's liveness and its gaps

log = logging.getLogger("skymesh.sdk")


@dataclass
class Migration:
    """One move of a session to another edge."""

    from_edge: str
    to_edge: str
    reason: str
    took_s: float  # from noticing the edge was lost (or asked to move) to joined elsewhere
    media_gap_s: float | None = None  # last media from the old edge to first from the new
    silent_s: float = 0.0  # how long the old edge had been silent when that was noticed


def close_error(error_code: int, reason: str) -> SkymeshError:
    """The SDK exception for a QUIC close with `error_code` and `reason`."""
    if error_code == edgeproto.DRAINED_ERROR:
        return RegionDrained(reason)
    if error_code in (edgeproto.RATE_LIMITED, edgeproto.TOO_MANY_SESSIONS):
        return RateLimited(error_code, reason)
    name = edgeproto.REFUSAL_CODES.get(error_code)
    if name is not None:
        return TokenRefused(name, error_code, reason)
    return ConnectionClosed(error_code, reason)


class _Protocol(quic.Protocol):
    """One QUIC connection to an edge; what it receives goes to the session's shared queues
    (`_Shared`), which outlive it when the session moves."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shared: _Shared | None = None
        self.joined: dict | None = None
        self.renewed: dict | None = None
        self.expiring_at: int | None = None  # set when the edge warns the token runs out
        self.moving: str | None = None  # the edge asked the session to move, and why
        self.media_at: float | None = None  # when media first came through this connection
        self.error: SkymeshError | None = None
        self.terminated = False
        self.heard = time.monotonic()  # when the edge was last heard from
        self.changed = asyncio.Event()
        self.pages = Pages()  # history pages asked of this edge
        self._lines = edgeproto.LineDecoder(max_line_bytes=None)  # the edge is trusted

    @property
    def address(self) -> str:
        host, port = self._quic._network_paths[0].addr[:2] if self._quic._network_paths \
            else ("?", 0)
        return f"{host}:{port}"

    def _notify(self) -> None:
        self.changed.set()
        if self.shared is not None:
            self.shared.changed.set()

    def datagram_received(self, data: bytes | str, addr) -> None:
        self.heard = time.monotonic()
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            kind, data = event.data[:1], event.data[1:]
            if kind == edgeproto.MEDIA_DATAGRAM:
                if self.media_at is None:
                    self.media_at = time.monotonic()
                if self.shared is not None:
                    self.shared.media_received(data)
            elif kind == edgeproto.COMMENTS_DATAGRAM and self.shared is not None:
                self.shared.comments.extend(edgeproto.decode_batch(data))
            else:
                return  # a kind this SDK does not know (a newer edge's)
            self._notify()
        elif isinstance(event, StreamDataReceived):
            self._read(event.data)
        elif isinstance(event, ConnectionTerminated):
            self.terminated = True
            if event.error_code:
                self.error = close_error(event.error_code, event.reason_phrase)
            self._notify()

    def _read(self, data: bytes) -> None:
        """Take the lines of the edge's stream; one that is not a JSON object is skipped (a
        newer edge may say more than this SDK reads)."""
        lines = self._lines.feed(data)
        while True:
            try:
                for msg in lines:
                    self._on_line(msg)
                return
            except edgeproto.ProtocolError:
                lines = self._lines.feed(b"")  # carry on after the line

    def _on_line(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == edgeproto.JOINED:
            self.joined = msg
            self.expiring_at = None
        elif kind == edgeproto.RENEWED:
            self.renewed = msg
            self.expiring_at = None
        elif kind == edgeproto.TOKEN_EXPIRING:
            self.expiring_at = int(msg.get("expires_at", 0))
        elif kind == edgeproto.MOVING:
            self.moving = str(msg.get("reason") or "the edge asked to move")
        elif kind == edgeproto.SETTLED and self.shared is not None:
            upto = msg.get("upto")
            if isinstance(upto, int):
                self.shared.settled(upto)
        elif kind == edgeproto.HISTORY:
            self.pages.take(msg)
        elif kind == edgeproto.PRESENCE and self.shared is not None:
            self.shared.presence_seen(msg)
        elif kind == edgeproto.LINK and self.shared is not None:
            channel, state = msg.get("channel"), msg.get("state")
            if isinstance(channel, str) and state in edgeproto.LINK_STATES:
                self.shared.links[channel] = {"state": state,
                                              "reason": str(msg.get("reason") or "")}
        elif kind == edgeproto.REFUSED and self.shared is not None:
            if msg.get("what") == edgeproto.COMMENT:
                self.shared.comments_refused += 1
                self.shared.comment_refusal = str(msg.get("reason") or "")
        elif kind == edgeproto.RECEIPT and self.shared is not None:
            uid, of, mid = msg.get("from"), msg.get("publisher"), msg.get("id")
            if isinstance(uid, str) and isinstance(of, str) and isinstance(mid, int):
                self.shared.receipts.append((uid, of, mid))
        elif kind == edgeproto.READS and self.shared is not None:
            counts = msg.get("counts")
            if isinstance(counts, list):
                self.shared.read_counts = [
                    (int(x[0]), int(x[1])) for x in counts
                    if isinstance(x, list) and len(x) == 2
                    and all(isinstance(v, int) for v in x)]
        elif kind == edgeproto.MESSAGE and self.shared is not None:
            stream, seq = msg.get("stream"), msg.get("seq")
            stream = stream if isinstance(stream, str) else None
            seq = seq if stream is not None and isinstance(seq, int) else None
            self.shared.inbox.add(Message(
                str(msg.get("from")), int(msg.get("id", 0)), str(msg.get("body")),
                stream, seq), time.monotonic())
        self._notify()

    async def wait_change(self) -> None:
        await self.changed.wait()
        self.changed.clear()


@dataclass
class _Shared:
    """What a session keeps across its connections."""

    inbox: Inbox = field(default_factory=Inbox)
    media: deque = field(default_factory=lambda: deque(maxlen=MAX_RECEIVED_MEDIA))
    media_dropped: int = 0  # received but not taken before MAX_RECEIVED_MEDIA newer ones
    media_at: float | None = None  # when media last arrived
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    gap_open: Migration | None = None  # a move whose media gap is not measured yet
    gap_from: float | None = None  # the last media before that move
    # messages published and not yet settled (`edgeproto.SETTLED`), by id: sent again at the
    # edge the session moves to
    unsettled: dict[int, str] = field(default_factory=dict)

    # who is in the channel, as the edge last said (a join that asked), and who joined and
    # left which region: ("join" | "leave", uid, region), oldest first
    presence: dict | None = None
    presence_events: deque = field(default_factory=lambda: deque(maxlen=MAX_PRESENCE_EVENTS))

    # co-hosting: each channel this session linked its own to -> {"state", "reason"}
    links: dict = field(default_factory=dict)
    # comments shown (uid, body), as the edge thinned them; the oldest dropped beyond the cap
    comments: deque = field(default_factory=lambda: deque(maxlen=MAX_RECEIVED_COMMENTS))
    comments_refused: int = 0  # this session's comments the edge refused (too fast)
    comment_refusal: str = ""  # the edge's reason, the last time
    # read receipts of the channel's members: (uid, publisher, id), oldest first
    receipts: deque = field(default_factory=lambda: deque(maxlen=MAX_RECEIPTS))
    # how many read this session's messages (large channels): (id, readers), highest first
    read_counts: list = field(default_factory=list)

    def presence_seen(self, msg: dict) -> None:
        view = {k: v for k, v in msg.items() if k not in ("type", "joined", "left")}
        if not isinstance(view.get("count"), int) or not isinstance(view.get("regions"), dict):
            return
        self.presence = view
        for kind, key in (("join", "joined"), ("leave", "left")):
            for pair in msg.get(key) or ():
                if isinstance(pair, list) and len(pair) == 2:
                    self.presence_events.append((kind, str(pair[0]), str(pair[1])))

    def settled(self, upto: int) -> None:
        for mid in [m for m in self.unsettled if m <= upto]:
            del self.unsettled[mid]

    def media_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.gap_open is not None and self.gap_from is not None:
            self.gap_open.media_gap_s = round(now - self.gap_from, 4)
            self.gap_open = None
        self.media_at = now
        if len(self.media) == self.media.maxlen:
            self.media_dropped += 1
        self.media.append(data)


class Session:
    """One client session, joined through one edge at a time. Make it with `connect`."""

    def __init__(self, token: str, channel: str, *, finder: EdgeFinder | None = None,
                 migrate: bool = False, liveness_s: float = LIVENESS_S,
                 move_timeout_s: float = MOVE_TIMEOUT_S, e2ee: SFrame | None = None) -> None:
        self.token = token
        self.channel = channel
        self.finder = finder
        self.migrate = migrate and finder is not None
        self.liveness_s = liveness_s
        self.move_timeout_s = move_timeout_s
        self.shared = _Shared()
        self.e2ee = e2ee  # end-to-end sealing of media and messages (None: not)
        self.publisher = secrets.token_hex(8)  # names its messages' stream at every edge
        self.migrations: list[Migration] = []
        self.joined: dict | None = None
        self.edge: Candidate | None = None  # where the session is now
        self.raced: list[tuple[Candidate, float]] = []  # the last race: (edge, handshake ms)
        self._p: _Protocol | None = None
        self._stack: AsyncExitStack | None = None
        self._next_id = 1
        self._closed = False
        self._final: SkymeshError | None = None  # why the session ended, if not by close()
        self._watcher: asyncio.Task | None = None
        self._retired: set[asyncio.Task] = set()
        self._presence = False  # joins ask to be shown who is in the channel
        self.recent = HistoryPage()  # the channel's last messages, as the join asked
        self._oldest: int | None = None  # the oldest history number handed on (this edge's)
        self._history_edge: _Protocol | None = None  # the edge the numbers are of
        self._next_request = 1

    # -- connections ---------------------------------------------------------------------------

    async def _open(self, edge: Candidate, config: QuicConfiguration,
                    overlap_s: float = 0.0) -> None:
        """Connect to `edge` and make it the session's connection (not joined yet). The one
        it replaces stays open for up to `overlap_s`, until media come through the new one:
        leaving an edge that still works (drained) leaves no gap while the relays learn where
        the session went."""
        stack = AsyncExitStack()
        hold = self.finder.hold if self.finder is not None else None
        held = hold.take(edge.address) if hold is not None else None
        if held is not None:  # the race's connection: no second handshake
            protocol = held.protocol
            stack.push_async_callback(held.release)
        else:
            try:
                protocol = await stack.enter_async_context(quic_connect(
                    edge.host, edge.port, configuration=config, create_protocol=_Protocol))
            except BaseException:
                await stack.aclose()
                raise
        assert isinstance(protocol, _Protocol)
        protocol.shared = self.shared
        old, old_stack = self._p, self._stack
        self._p, self._stack, self.edge = protocol, stack, edge
        self.stream_id = protocol._quic.get_next_available_stream_id()
        if old_stack is not None:
            self._retire(old, old_stack, protocol if overlap_s > 0 else None, overlap_s)

    def _retire(self, protocol: _Protocol | None, stack: AsyncExitStack,
                successor: _Protocol | None = None, overlap_s: float = 0.0) -> None:
        """Close a connection the session has left, in the background (closing one to a dead
        edge waits out QUIC's closing period); once `successor` has brought media, or after
        `overlap_s`, when it is given."""
        async def retire() -> None:
            if successor is not None:
                deadline = time.monotonic() + overlap_s
                while successor.media_at is None and time.monotonic() < deadline \
                        and not successor.terminated:
                    await asyncio.sleep(WATCH_S / 2)
            if protocol is not None:
                protocol.shared = None
            await stack.aclose()

        task = asyncio.get_running_loop().create_task(retire())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    @property
    def _protocol(self) -> _Protocol:
        if self._p is None:
            raise ConnectionClosed(0, "not connected")
        return self._p

    def _check_open(self) -> None:
        if self._final is not None:
            raise self._final
        p = self._protocol
        if p.terminated and not self.migrate:
            raise p.error or ConnectionClosed()

    def _send(self, obj: dict) -> None:
        self._check_open()
        p = self._protocol
        if p.terminated:
            return  # moving: what the edge did not take is the caller's to resend
        p._quic.send_stream_data(self.stream_id, edgeproto.encode_line(obj))
        p.transmit()

    # -- the API -----------------------------------------------------------------------------

    @property
    def token_expiring_at(self) -> int | None:
        """The token's expiry (Unix time) once the edge has warned that it runs out soon;
        renew before then or the edge closes the session (TokenRefused "expired")."""
        return self._protocol.expiring_at

    @property
    def media_dropped(self) -> int:
        """Media received but dropped because `media()` did not take them in time."""
        return self.shared.media_dropped

    @property
    def messages_lost(self) -> int:
        """Messages of other publishers given up on: gaps no edge could fill (sdk/inbox)."""
        return self.shared.inbox.lost

    async def renew(self, token: str) -> dict:
        """Hand the edge a fresh token for the same app, channel, user and zone; returns the
        edge's "renewed" reply. A refused token closes the session (TokenRefused)."""
        p = self._protocol
        p.renewed = None
        self._send(edgeproto.renew(token))
        while p.renewed is None:
            if p.terminated:
                raise p.error or ConnectionClosed()
            await p.wait_change()
        self.token = token
        return p.renewed

    async def join(self, history: int = 0, presence: bool = False) -> dict:
        """Join the channel: the edge's "joined" reply, or TokenRefused/ConnectionClosed. A
        session that may move watches its edge from then on. `history`: the channel's last
        messages kept at the edge (up to edgeproto.MAX_HISTORY_PAGE) are in `recent` once
        this returns; `older()` pages further back. `presence`: `presence` says who is in
        the channel, kept up to date, and `presence_events` who joined and left."""
        if not 0 <= history <= edgeproto.MAX_HISTORY_PAGE:
            raise ValueError(f"history: 0 to {edgeproto.MAX_HISTORY_PAGE} messages")
        self._presence = presence
        p = self._protocol
        self.joined = await self._join(p, history)
        if history:
            self.recent = await self._page(p, 0)
            self._history_edge, self._oldest = p, self.recent.oldest
        if self.migrate and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self.joined

    @property
    def presence(self) -> dict | None:
        """Who is in the channel (a join with presence=True): `count` (distinct users at each
        edge, summed), `regions` (count per region) and, while the channel is small,
        `members`; None until the edge has said."""
        return self.shared.presence

    @property
    def presence_events(self) -> deque:
        """("join" | "leave", uid, region) as the edge reported them, oldest first (small
        channels only)."""
        return self.shared.presence_events

    async def link(self, channel: str, token: str, timeout: float = 10.0) -> dict:
        """Co-host with `channel`: its media and messages are relayed into this session's
        channel and this channel's into it, by the edge, until `unlink` or the session
        ends. `token`: one for `channel`, of the same app and zone, granting "relay" (as
        this session's must). Returns the link's state once "linked" or "failed" (with the
        reason); `links` holds every link's latest state."""
        self.shared.links.pop(channel, None)
        self._send(edgeproto.link(channel, token))
        return await self.wait_for(
            lambda: (s := self.shared.links.get(channel)) and s["state"] in ("linked", "failed")
            and s, timeout)

    async def unlink(self, channel: str, timeout: float = 10.0) -> dict:
        """End a link (`link`); its state once "unlinked"."""
        self._send(edgeproto.unlink(channel))
        return await self.wait_for(
            lambda: (s := self.shared.links.get(channel)) and s["state"] == "unlinked" and s,
            timeout)

    @property
    def links(self) -> dict:
        """Each channel this session linked its own to: {"state", "reason"} as last told."""
        return self.shared.links

    def send_comment(self, body: str) -> None:
        """A comment (danmaku) for the channel: best-effort, thinned by the edges; beyond
        the edge's per-user rate it is refused (`comments_refused`, `comment_refusal`) and
        the session stays. A body of more than edgeproto.MAX_COMMENT_BYTES raises
        ValueError (edgeproto.ProtocolError) unsent."""
        edgeproto.commented({"body": body})
        self._send(edgeproto.comment(body))

    @property
    def comments_refused(self) -> int:
        """Comments of this session the edge refused because its user commented too fast."""
        return self.shared.comments_refused

    @property
    def comment_refusal(self) -> str:
        return self.shared.comment_refusal

    async def comments(self) -> AsyncIterator[tuple[str, str]]:
        """The channel's comments (uid, body) as the edge shows them: thinned to its rate,
        fairly; ends when the session closes."""
        shared = self.shared
        while True:
            while shared.comments:
                yield shared.comments.popleft()
            if self._ended():
                return
            await self._wait_shared()

    async def mark_read(self, message: Message) -> None:
        """Tell the channel this user read `message` and every earlier one of its publisher:
        a receipt to every member of a small channel, a count for a large one."""
        if message.stream is None:
            raise ValueError("a message the edge did not number (no stream) cannot be marked")
        self._send(edgeproto.read(message.stream, message.id))

    @property
    def receipts(self) -> deque:
        """(uid, publisher, id): a member read that publisher's messages up to that id, as
        the edges reported them (small channels), oldest first. The publisher is the part of
        a message's `stream` after the relay's name (`Message.stream.rpartition(":")[2]`);
        this session's own is `publisher`."""
        return self.shared.receipts

    def read_by(self, mid: int) -> int:
        """How many users have read this session's message `mid` (at least), as its edge
        last counted them (large channels)."""
        best = 0
        for upto, readers in self.shared.read_counts:  # highest id first, readers growing
            if upto >= mid:
                best = readers
        return best

    async def wait_for(self, condition, timeout: float = 10.0):
        """Wait until `condition()` holds (it looks at the session's state: `receipts`,
        `read_by`, `presence`); its value; TimeoutError after `timeout`."""
        async def until():
            while True:
                value = condition()
                if value:
                    return value
                if self._ended():
                    raise ConnectionClosed(0, "the session ended")
                await self._wait_shared()
        return await asyncio.wait_for(until(), timeout)

    async def wait_presence(self, condition, timeout: float = 10.0) -> dict:
        """The presence once `condition(presence)` holds; TimeoutError after `timeout`."""
        async def until() -> dict:
            while True:
                view = self.shared.presence
                if view is not None and condition(view):
                    return view
                if self._ended():
                    raise ConnectionClosed(0, "the session ended")
                await self._wait_shared()
        return await asyncio.wait_for(until(), timeout)

    async def older(self, limit: int = 50) -> HistoryPage:
        """The page of the channel's history before the oldest handed on so far (the newest
        page at first), from the session's edge. Numbers are the edge's own: after a move
        the pages are the new edge's, from its newest."""
        if not 1 <= limit <= edgeproto.MAX_HISTORY_PAGE:
            raise ValueError(f"limit: 1 to {edgeproto.MAX_HISTORY_PAGE} messages")
        p = self._protocol
        if p is not self._history_edge:
            self._history_edge, self._oldest = p, None
        request = self._next_request
        self._next_request += 1
        self._send(edgeproto.history_request(request, limit, self._oldest))
        page = await self._page(p, request)
        if page.oldest is not None:
            self._oldest = page.oldest
        return page

    async def _page(self, p: _Protocol, request: int) -> HistoryPage:
        while request not in p.pages.done:
            if p.terminated:
                raise p.error or ConnectionClosed()
            await p.wait_change()
        page = p.pages.done.pop(request)
        if self.e2ee is not None:
            opened = []
            for m in page.messages:
                try:
                    opened.append(dataclasses.replace(m, body=self.e2ee.open_text(m.body)))
                except E2EEError:
                    continue  # not the call's: counted in e2ee.refused
            page.messages = opened
        return page

    async def _join(self, p: _Protocol, history: int = 0) -> dict:
        p.joined = None
        p._quic.send_stream_data(self.stream_id, edgeproto.encode_line(edgeproto.join(
            self.token, self.channel, self.shared.inbox.positions(), self.publisher,
            history, self._presence)))
        p.transmit()
        while p.joined is None:
            if p.terminated:
                raise p.error or ConnectionClosed()
            await p.wait_change()
        # what the last edge may not have passed on, again, with the same ids: subscribers
        # take only what they have not delivered (sdk/inbox.py)
        for mid, body in list(self.shared.unsettled.items()):
            p._quic.send_stream_data(self.stream_id, edgeproto.encode_line(
                edgeproto.publish(mid, body)))
        p.transmit()
        return p.joined

    def publish_media(self, data: bytes) -> None:
        """Send one media datagram (unreliable, at most MAX_MEDIA_PAYLOAD bytes)."""
        self._check_open()
        limit = MAX_MEDIA_PAYLOAD - (OVERHEAD if self.e2ee is not None else 0)
        if len(data) > limit:
            raise ValueError(f"a media datagram is at most {limit} bytes"
                             + (" sealed end to end" if self.e2ee is not None else "")
                             + f", got {len(data)}")
        if self.e2ee is not None:
            data = self.e2ee.seal(bytes(data))
        p = self._protocol
        if p.terminated:
            return  # moving: media are unreliable
        p._quic.send_datagram_frame(bytes(data))
        p.transmit()

    async def send_message(self, body: str) -> int:
        """Send a reliable, ordered message to the channel; returns its id. A body longer than
        MAX_MESSAGE_BYTES of UTF-8 raises ValueError (edgeproto.ProtocolError) unsent."""
        if self.e2ee is not None:
            body = self.e2ee.seal_text(body)
        edgeproto.check_body(body)
        mid = self._next_id
        self._send(edgeproto.publish(mid, body))
        self._next_id += 1
        if self.migrate:
            kept = self.shared.unsettled
            kept[mid] = body
            if len(kept) > MAX_UNSETTLED:  # an edge that never says: the oldest go
                del kept[next(iter(kept))]
        return mid

    async def media(self) -> AsyncIterator[bytes]:
        """Received media datagrams, across moves; ends when the session closes normally,
        raises the close's error otherwise."""
        shared = self.shared
        while True:
            while shared.media:
                frame = shared.media.popleft()
                if self.e2ee is not None:
                    try:
                        frame = self.e2ee.open(frame)
                    except E2EEError:
                        continue  # not the call's: counted in e2ee.refused
                yield frame
            if self._ended():
                return
            await self._wait_shared()

    async def messages(self) -> AsyncIterator[Message]:
        """Received channel messages of other publishers, in order, once each, across
        moves."""
        inbox = self.shared.inbox
        while True:
            while inbox.ready:
                message = inbox.ready.popleft()
                if self.e2ee is not None:
                    try:
                        message = dataclasses.replace(
                            message, body=self.e2ee.open_text(message.body))
                    except E2EEError:
                        continue  # not the call's: counted in e2ee.refused
                yield message
            if self._ended():
                return
            await self._wait_shared()

    def _ended(self) -> bool:
        """Whether the session is over (raising its error if it ended by one)."""
        if self._final is not None:
            raise self._final
        if self._closed:
            return True
        p = self._p
        if p is not None and p.terminated and not self.migrate:
            if p.error:
                raise p.error
            return True
        return False

    async def _wait_shared(self) -> None:
        await self.shared.changed.wait()
        self.shared.changed.clear()

    async def wait_closed(self) -> None:
        """Wait until the session ends; raises its error, if any."""
        while not self._ended():
            await self._wait_shared()

    def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self._p is not None:
            self._p.close()
        self.shared.changed.set()

    async def _aclose(self) -> None:
        self.close()
        if self.finder is not None and self.finder.hold is not None:
            self.finder.hold.take("")  # a race's connections nobody took
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._stack is not None:
            await self._stack.aclose()
        for task in list(self._retired):
            with contextlib.suppress(Exception):
                await task

    # -- moving ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Look after the joined session: ask again for gaps, notice a lost edge, move."""
        try:
            while not self._closed:
                p = self._protocol
                now = time.monotonic()
                inbox = self.shared.inbox
                inbox.expire(now)
                if inbox.ready:
                    self.shared.changed.set()
                due = inbox.due(now)
                if due and not p.terminated:
                    self._send(edgeproto.resume(due))
                reason = self._trouble(p, now)
                if reason is not None:
                    if p.terminated and isinstance(p.error, (TokenRefused, RateLimited)):
                        self._final = p.error  # another edge would say the same
                        self.shared.changed.set()
                        return
                    await self._move(p, reason, now)
                    continue
                if now - p.heard > self.liveness_s / 3:
                    p._quic.send_ping(0)  # ack-eliciting: the edge's ACK says it is there
                    p.transmit()
                await asyncio.sleep(WATCH_S)
        except SkymeshError as e:
            self._final = e
            self.shared.changed.set()

    def _trouble(self, p: _Protocol, now: float) -> str | None:
        if p.terminated:
            return f"the connection closed ({p.error})" if p.error else \
                "the connection closed"
        if p.moving:
            return p.moving
        if now - p.heard > self.liveness_s:
            return f"nothing from the edge for {now - p.heard:.1f} s"
        return None

    async def _move(self, old: _Protocol, reason: str, noticed: float) -> None:
        """Join through another edge than `old`'s; ConnectionClosed when none takes the
        session within move_timeout_s."""
        assert self.finder is not None and self.edge is not None
        lost = self.edge
        log.info("session of %s leaves edge %s: %s", self.channel, lost.address, reason)
        gap_from = self.shared.media_at
        deadline = noticed + self.move_timeout_s
        delay = 0.1
        errors: list[str] = []
        while not self._closed:
            try:
                order, self.raced = await self.finder.find(exclude=[lost.address],
                                                           any_region=True)
            except (EdgeUnavailable, ControllerUnavailable) as e:
                order = []
                errors.append(str(e))
            for edge in order:
                try:
                    async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                        await self._open(edge, self.finder_config(),
                                         0.0 if old.terminated else OVERLAP_S)
                        self.joined = await self._join(self._protocol)
                except (TimeoutError, ConnectionError, OSError, SkymeshError) as e:
                    if isinstance(e, (TokenRefused, RateLimited)):
                        raise
                    errors.append(f"{edge.address}: {e or type(e).__name__}")
                    continue
                m = Migration(lost.address, edge.address, reason,
                              round(time.monotonic() - noticed, 4),
                              silent_s=round(noticed - old.heard, 4))
                self.migrations.append(m)
                if gap_from is not None:
                    self.shared.gap_open, self.shared.gap_from = m, gap_from
                log.info("session of %s moved to %s in %.2f s", self.channel, edge.address,
                         m.took_s)
                return
            if time.monotonic() + delay > deadline:
                raise ConnectionClosed(0, f"edge {lost.address} lost ({reason}) and no other "
                                          f"took the session in {self.move_timeout_s:g} s: "
                                          + "; ".join(errors[-3:]))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def reresolve(self) -> bool:
        """Find the edges again and race them, and move to another edge only if it is at
        least SWITCH_MS and SWITCH_FRACTION faster than the one in use over the recent
        measurements (`sdk.edges.keep_or_switch`: hysteresis, so that a session does not
        flap between near-equal edges). True when it moved."""
        if self.finder is None or self.edge is None or self._p is None:
            raise ValueError("reresolve needs a session joined through resolvers, a "
                             "fallback or candidates")
        current = self.edge.address
        rtt = getattr(self._p._quic._loss, "_rtt_min", None)
        if isinstance(rtt, float) and rtt != float("inf"):
            self.finder.recent.setdefault(current, deque(maxlen=5)).append(rtt * 1000)
        order, self.raced = await self.finder.find(any_region=True)
        best = self.finder.better_than(current)
        target = next((c for c in order if c.address == best), None)
        if best == current or target is None:
            if self.finder.hold is not None:
                self.finder.hold.take("")  # the race's connections: none is needed
            return False
        started = time.monotonic()
        old = self.edge
        await self._open(target, self.finder_config(), OVERLAP_S)
        self.joined = await self._join(self._protocol)
        self.migrations.append(Migration(old.address, target.address,
                                         f"{target.region} is faster",
                                         round(time.monotonic() - started, 4)))
        return True

    def finder_config(self) -> QuicConfiguration:
        assert self.finder is not None
        return _client_config(self.finder.ca_file, self.finder.server_name)


def _client_config(ca_file: Path | str, server_name: str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
                               server_name=server_name)
    config.load_verify_locations(cafile=str(ca_file))
    return config


@asynccontextmanager
async def connect(host: str | None = None, port: int | None = None, token: str = "",
                  channel: str = "", ca_file: Path | str = "",
                  server_name: str = "localhost", *, resolvers: Sequence[str] = (),
                  resolver_ca: bytes | None = None, address: str = "", region: str = "",
                  fallback: Fallback | None = None, candidates: Sequence[Candidate] = (),
                  migrate: bool | None = None, liveness_s: float = LIVENESS_S,
                  move_timeout_s: float = MOVE_TIMEOUT_S,
                  e2ee_key: bytes | None = None) -> AsyncIterator[Session]:
    """A session to an edge whose certificate the CA in `ca_file` signed.

    `host` and `port`: that edge. Without them: the best edge the `resolvers` (host:port,
    the first to answer; TLS checked against `resolver_ca`, None: plaintext) offer for the
    client at `address` ("": where the resolver sees it; of `region` only, when given), else
    the `fallback`'s or the `candidates`, raced by handshake. `migrate` (default: when there
    is anywhere else to go) lets the session move to another edge by itself when its edge is
    lost. `e2ee_key`: the call's base key (at least 16 bytes, from the app, held by the
    clients only): media and messages are sealed end to end (sdk/e2ee.py), so the relays
    forward what they cannot read."""
    if not token or not channel or not ca_file:
        raise ValueError("connect needs a token, a channel and the edges' CA file")
    finder = None
    if resolvers or fallback is not None or candidates:
        finder = EdgeFinder(token, str(ca_file), resolvers, resolver_ca, address, fallback,
                            candidates, server_name, region=region,
                            connection=(lambda: _client_config(ca_file, server_name),
                                        _Protocol))
    if migrate is None:
        migrate = finder is not None
    session = Session(token, channel, finder=finder, migrate=migrate, liveness_s=liveness_s,
                      move_timeout_s=move_timeout_s,
                      e2ee=SFrame(e2ee_key) if e2ee_key is not None else None)
    config = _client_config(ca_file, server_name)
    try:
        if host is not None:
            if port is None:
                raise ValueError("connect: a host needs a port")
            await session._open(Candidate("", "", host, port), config)
        else:
            if finder is None:
                raise ValueError("connect needs a host and port, resolvers, a fallback "
                                 "or candidates")
            order, session.raced = await finder.find()
            errors = []
            for edge in order:
                try:
                    await session._open(edge, config)
                    break
                except (ConnectionError, OSError) as e:
                    errors.append(f"{edge.address}: {e}")
            else:
                raise ConnectionClosed(0, "no edge answered: " + "; ".join(errors))
    except ConnectionError as e:
        await session._aclose()
        raise ConnectionClosed(0, f"cannot connect to {host}:{port}: {e}") from e
    except BaseException:
        await session._aclose()
        raise
    try:
        yield session
    finally:
        await session._aclose()
