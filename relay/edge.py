"""The client edge: an aioquic server where SDK sessions join channels, publish media (QUIC
datagrams) and messages (JSON lines on their stream), and receive what the channel's other
publishers send, here or, through the relay's fabric, in other regions. The protocol is
`skymesh.edgeproto`; each session's protocol logic is `relay.edgesession.EdgeSession`, which
this shell feeds with what arrives and the time, and whose actions (lines, closes, timers,
channel membership, messages to publish) it performs. Media are forwarded here, per datagram,
without a call into the session.

A channel is known to the fabric as (zone, "app/channel").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets as _secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)

from relay.danmaku import TICK_S, Danmaku, DanmakuLimits
from relay.edgesession import (
    Action,
    Close,
    EdgeLimits,
    EdgeSession,
    EnterChannel,
    LeaveChannel,
    Link,
    MarkRead,
    PostComment,
    PublishingChanged,
    PublishMessage,
    Resume,
    Send,
    SendHistory,
    SendPresence,
    SetTimer,
    SourceLimits,
)
from relay.fabric import ChannelKey
from relay.history import History, Kept
from relay.presence import PRESENCE_STREAM, Presence
from relay.receipts import RECEIPTS_STREAM, Receipts, receipt_body
from skymesh import edgeproto
from skymesh.certs import files_stamp
from skymesh.edgeproto import ALPN, MAX_DATAGRAM_FRAME_SIZE, MAX_MEDIA_BYTES
from skymesh.net import quic
from skymesh.ratelimit import TokenBucket
from skymesh.token import Grant

LINK_PREFIX = "link-"  # this edge's stream of what it relays from a linked channel


def link_stream(key: ChannelKey) -> str:
    """The stream (publisher name) under which an edge relays channel `key`'s traffic into
    a linked one: no client can name its own so (publishers are hex digits)."""
    return LINK_PREFIX + hashlib.blake2b(f"{key[0]}/{key[1]}".encode(),
                                         digest_size=8).hexdigest()


def is_link_stream(stream: str | None) -> bool:
    return stream is not None and stream.rpartition(":")[2].startswith(LINK_PREFIX)


# the edges' own streams in the fabric, "relay:presence" and "relay:receipts"
PRESENCE_SUFFIX, RECEIPTS_SUFFIX = ":" + PRESENCE_STREAM, ":" + RECEIPTS_STREAM
MAX_QUEUED_DATAGRAMS = 64  # per session; the oldest are dropped beyond this
MEDIA_DEADLINE_S = 0.015  # media queued longer than this is dropped, not sent late
# a tick's comments: the edge writes them to every session of a channel at once, and with
# thousands of sessions the last are written tens of milliseconds after the first
COMMENTS_DEADLINE_S = 0.25
# a session's lines that come within this of its last write wait for the next, together: at
# most 20 writes a second to a session however fast messages come (gifts and orders in a
# big stream), each a packet and an ACK; a line after a quiet spell leaves at once
WRITE_GAP_S = 0.05
FANOUT_SLICE = 100  # sessions shown a tick's comments at once; more are spread over the tick
# The kernel queues what the edge has not read yet; under overload a big receive buffer is a
# queue of stale media. 96 KiB (the kernel doubles it) holds about 12 ms at the edge's top rate.
RECEIVE_BUFFER = 96 * 1024

log = logging.getLogger("skymesh.relay")

COUNTERS = ("joined", "refused", "renewed", "media_forwarded", "media_dropped",
            "media_expired", "messages", "refused_rate", "refused_sessions",
            "media_rate_dropped", "resumed", "replayed", "moving", "history_pages",
            "history_messages", "links")
# flow control: what a client may have in flight to the edge (bytes of its streams, all told)
MAX_SESSION_DATA = 256 * 1024
CERT_CHECK_S = 5.0  # how often the edge looks for a reissued certificate



class Uplink(Protocol):
    """Where the edge hands what its publishers send for other regions (the relay's fabric)."""

    def media_published(self, key: ChannelKey, stream: str, data: bytes) -> None: ...

    def comments_published(self, key: ChannelKey, payload: bytes) -> None: ...

    def message_published(self, key: ChannelKey, stream: str, uid: str, mid: int,
                          body: str) -> tuple[str, int | None]:
        """Returns the message's stream name (`edgeproto.stream_id`) and number in it (None
        while it is held unnumbered)."""

    def replay_requested(self, key: ChannelKey, stream: str, after: int) -> None:
        """Ask for stream `stream`'s (a stream_id) messages after `after`: they come back
        through `EdgeState.deliver_replayed`."""

    def interest_changed(self) -> None: ...


class EdgeState:
    """What one edge knows: its region, the zones it may serve, the apps' public keys (which
    verify tokens but cannot mint them), the sessions joined to each channel, and its
    counters."""

    def __init__(self, app_keys: Mapping[str, tuple[bytes, ...]], region: str, zones: set[str],
                 max_media_bytes: int = MAX_MEDIA_BYTES,
                 max_queued_datagrams: int = MAX_QUEUED_DATAGRAMS,
                 media_deadline_s: float = MEDIA_DEADLINE_S,
                 uplink: Uplink | None = None, limits: EdgeLimits | None = None,
                 history: History | None = None) -> None:
        self.app_keys = {app: tuple(keys) for app, keys in app_keys.items()}
        self.region = region
        self.zones = frozenset(zones)
        self.drained = False
        self.max_media_bytes = max_media_bytes
        self.max_queued_datagrams = max_queued_datagrams
        self.media_deadline_s = media_deadline_s
        self.uplink = uplink
        self.channels: dict[ChannelKey, set[EdgeConnection]] = {}
        self.streams: dict[str, EdgeConnection] = {}  # the joined sessions by fabric stream
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.port: int | None = None
        self.limits = limits or EdgeLimits()
        self.sources = SourceLimits(self.limits)
        self.history = history if history is not None else History()
        # who is in each channel: here, and as the other edges announce
        here = getattr(uplink, "name", None) or region
        self.presence = Presence(here)
        self.receipts = Receipts(here)
        lim = self.limits
        self.last_tick: float | None = None  # when system_tick last ran (monotonic)
        self.danmaku = Danmaku(DanmakuLimits(
            lim.comments_per_user_per_s, lim.comments_per_user_burst,
            lim.comments_shown_per_s, lim.comments_forwarded_per_s))
        self.system_mid = 0  # ids of this edge's own messages (presence, receipts)
        self.system_task: asyncio.Task | None = None
        self.held: list[EdgeConnection] = []  # sessions whose lines wait (WRITE_GAP_S)
        self._flush: asyncio.TimerHandle | None = None
        # co-hosting: each linked channel -> the channels it is linked with (both ways), who
        # asked for each link (its session -> the other channel's client name), the sessions
        # waiting for "linked", and the channels whose member relays the controller has said
        self.links: dict[ChannelKey, set[ChannelKey]] = {}
        self.link_owners: dict[frozenset, dict[EdgeConnection, str]] = {}
        self.pending_links: dict[ChannelKey, set[EdgeConnection]] = {}
        self.known_members: set[ChannelKey] = set()
        self.link_mids: dict[tuple[ChannelKey, ChannelKey], int] = {}
        # each message kept (a store that keeps them across restarts): (channel, message)
        self.on_kept: Callable[[ChannelKey, Kept], None] | None = None

    def configure(self, app_keys: Mapping[str, tuple[bytes, ...]], zones: set[str],
                  drained: bool = False) -> None:
        """New app public keys and zones (from the controller); joined sessions keep their
        grant until they renew or it expires. A drained edge refuses new sessions and tells
        the joined ones to move ("moving"): they carry on here until they do."""
        self.app_keys = {app: tuple(keys) for app, keys in app_keys.items()}
        self.zones = frozenset(zones)
        if drained and not self.drained:
            line = edgeproto.encode_line(edgeproto.moving(edgeproto.MOVING_DRAINED))
            for sessions in self.channels.values():
                for session in sessions:
                    self.counters["moving"] += 1
                    session.send_line(line)
        self.drained = drained

    def members(self, key: ChannelKey) -> set[EdgeConnection]:
        return self.channels.get(key, set())

    def has_stream(self, stream: str) -> bool:
        """Whether the session publishing as `stream` (its fabric stream id) is joined."""
        return stream in self.streams

    def stream_settled(self, stream: str, mid: int) -> None:
        """Every message of the session publishing as `stream` up to its id `mid` reached
        every relay subscribed when it was sent (or was given up on): tell the session."""
        session = self.streams.get(stream)
        if session is not None:
            session.send_line(edgeproto.encode_line(edgeproto.settled(mid)))

    def joined(self) -> int:
        """How many sessions are joined to a channel here."""
        return sum(len(sessions) for sessions in self.channels.values())

    def interest(self) -> dict[ChannelKey, tuple[bool, bool]]:
        """(has subscribers, has publishers) for each channel with sessions here: every such
        edge publishes, if only its presence announcements, its users' read receipts and
        their comments, so the controller tells it where the channel's other edges are."""
        return dict.fromkeys([*self.channels, *self.links], (True, True))

    def add(self, session: EdgeConnection) -> None:
        assert session.key is not None and session.grant is not None
        self.channels.setdefault(session.key, set()).add(session)
        self.streams[session.stream] = session
        self.presence.joined(session.key, session.grant.uid, time.monotonic())
        self.interest_changed()

    def remove(self, session: EdgeConnection) -> None:
        members = self.channels.get(session.key) if session.key else None
        if members is None or session not in members:
            return
        members.discard(session)
        if session.grant is not None:
            self.presence.left(session.key, session.grant.uid, time.monotonic())
        if self.streams.get(session.stream) is session:
            del self.streams[session.stream]
        if not members:
            del self.channels[session.key]
        self.interest_changed()

    def interest_changed(self) -> None:
        if self.uplink is not None:
            self.uplink.interest_changed()

    def deliver_media(self, key: ChannelKey, data: bytes,
                      exclude: EdgeConnection | None = None, stream: str | None = None) -> None:
        framed = edgeproto.MEDIA_DATAGRAM + data
        for session in self.members(key):
            if session is not exclude:
                session.send_media(framed)
        if key in self.links and not is_link_stream(stream):
            for other in self.links[key]:
                for session in self.members(other):
                    session.send_media(framed)
                if self.uplink is not None:
                    self.uplink.media_published(other, link_stream(key), data)

    # -- co-hosting ------------------------------------------------------------------------

    def delivers(self, key: ChannelKey) -> bool:
        """Whether the fabric should hand this edge the channel's traffic: it has sessions
        in it, or relays it into a channel it links."""
        return key in self.channels or key in self.links

    def link(self, key: ChannelKey, other: ChannelKey, name: str,
             session: EdgeConnection) -> None:
        """`session` (in channel `key`) links it with `other` (client name `name`): each
        one's traffic is relayed into the other here until it unlinks or leaves."""
        pair = frozenset((key, other))
        owners = self.link_owners.setdefault(pair, {})
        owners[session] = name
        self.links.setdefault(key, set()).add(other)
        self.links.setdefault(other, set()).add(key)
        self.counters["links"] += 1
        session.send_line(edgeproto.encode_line(edgeproto.link_state(name, "linking")))
        if other in self.known_members:  # the controller has said where its edges are
            session.send_line(edgeproto.encode_line(edgeproto.link_state(name, "linked")))
        else:
            self.pending_links.setdefault(other, set()).add(session)
        self.interest_changed()

    def unlink(self, key: ChannelKey, other: ChannelKey, session: EdgeConnection,
               say: bool = True) -> None:
        pair = frozenset((key, other))
        owners = self.link_owners.get(pair, {})
        name = owners.pop(session, None)
        self.pending_links.get(other, set()).discard(session)
        if not owners:
            self.link_owners.pop(pair, None)
            for a, b in ((key, other), (other, key)):
                linked = self.links.get(a)
                if linked is not None:
                    linked.discard(b)
                    if not linked:
                        del self.links[a]
            self.interest_changed()
        if say and name is not None:
            session.send_line(edgeproto.encode_line(edgeproto.link_state(name, "unlinked")))

    def unlink_all(self, session: EdgeConnection) -> None:
        for pair in [p for p, owners in self.link_owners.items() if session in owners]:
            key, other = (session.key, next(iter(pair - {session.key}), session.key))
            self.unlink(key, other, session, say=False)

    def deliver_message(self, key: ChannelKey, uid: str, mid: int, body: str,
                        exclude: EdgeConnection | None = None, stream: str | None = None,
                        seq: int | None = None) -> None:
        if stream is not None and stream.endswith(PRESENCE_SUFFIX):
            # another edge's announcement of who is there: for this edge, not its clients
            self.presence.heard(key, stream[:-len(PRESENCE_SUFFIX)], body, time.monotonic())
            return
        if stream is not None and stream.endswith(RECEIPTS_SUFFIX):
            heard = self.receipts.heard(key, stream[:-len(RECEIPTS_SUFFIX)], body)
            if heard is not None:
                self.deliver_receipt(key, *heard)
            return
        line = edgeproto.encode_line(edgeproto.deliver(uid, mid, body, stream, seq))
        for session in self.members(key):
            if session is not exclude:
                session.send_line(line)
        if key in self.links and not is_link_stream(stream):
            self._relay_message(key, uid, body)
        kept = self.history.add(key, uid, mid, body, stream, seq, time.time())
        if kept is not None and self.on_kept is not None:
            self.on_kept(key, kept)

    def _relay_message(self, key: ChannelKey, uid: str, body: str) -> None:
        """A message of `key` into each channel linked with it: under this edge's link
        stream, numbered afresh, reliable as any message."""
        for other in self.links[key]:
            mid = self.link_mids.get((key, other), 0) + 1
            self.link_mids[key, other] = mid
            numbered = None
            if self.uplink is not None:
                numbered = self.uplink.message_published(other, link_stream(key), uid, mid,
                                                         body)
            stream, seq = numbered or (None, None)
            line = edgeproto.encode_line(edgeproto.deliver(uid, mid, body, stream, seq))
            for session in self.members(other):
                session.send_line(line)

    def members_changed(self, key: ChannelKey, names: frozenset[str]) -> None:
        """The controller's list of the relays delivering the channel (the fabric's)."""
        self.known_members.add(key)
        for session in self.pending_links.pop(key, set()):
            for pair, owners in self.link_owners.items():
                if key in pair and session in owners:
                    session.send_line(edgeproto.encode_line(edgeproto.link_state(
                        owners[session], "linked")))
        self.presence.members_are(key, names, time.monotonic())
        self.receipts.members_are(key, names)

    def publish_system(self, key: ChannelKey, stream: str, body: str) -> None:
        """A message of this edge's own (presence, receipts) to the channel's other edges."""
        if self.uplink is not None:
            self.system_mid += 1
            self.uplink.message_published(key, stream, "", self.system_mid, body)

    def mark_read(self, key: ChannelKey, uid: str, of: str, upto: int,
                  reader: EdgeConnection | None = None) -> None:
        """A session here read publisher `of`'s messages up to `upto`: in a small channel a
        receipt to every member, in a large one counted."""
        small = "members" in self.presence.view(key)
        if not self.receipts.read(key, uid, of, upto, counted=not small):
            return
        if small:
            self.publish_system(key, RECEIPTS_STREAM, receipt_body(uid, of, upto))
            self.deliver_receipt(key, uid, of, upto, exclude=reader)

    def post_comment(self, key: ChannelKey, uid: str, body: str,
                     session: EdgeConnection) -> None:
        """A viewer's comment: taken for this tick, or refused (the user comments too fast:
        told, not closed)."""
        if self.danmaku.comment(key, uid, body, time.monotonic()):
            return
        lim = self.danmaku.limits
        session.send_line(edgeproto.encode_line(edgeproto.refused(
            edgeproto.COMMENT, edgeproto.comments_too_fast(lim.per_user_per_s,
                                                           lim.per_user_burst))))

    def deliver_comments(self, key: ChannelKey, payload: bytes) -> None:
        """A batch of comments another edge sent on."""
        self.danmaku.heard(key, edgeproto.decode_batch(payload))

    def deliver_receipt(self, key: ChannelKey, uid: str, of: str, upto: int,
                        exclude: EdgeConnection | None = None) -> None:
        line = edgeproto.encode_line(edgeproto.receipt(uid, of, upto))
        for session in self.members(key):
            if session is not exclude:
                session.send_line(line)

    def hold(self, session: EdgeConnection) -> None:
        """Write `session`'s lines with the next flush, at most WRITE_GAP_S from now."""
        self.held.append(session)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(WRITE_GAP_S, self.flush_held)

    def flush_held(self) -> None:
        self._flush = None
        held, self.held = self.held, []
        now = time.monotonic()
        for session in held:
            session.holding = False
            session.written_at = now
            session.transmit_soon()

    def system_tick(self, now: float) -> None:
        """Announce who is here and how many read what, when it changed; forget what went
        stale; show the sessions that asked what changed."""
        p = self.presence
        for key, body in p.due(now):
            self.publish_system(key, PRESENCE_STREAM, body)
        p.expire(now)
        for key, view in p.changes():
            line = None
            for session in self.members(key):
                if session.wants_presence:
                    line = line or edgeproto.encode_line(edgeproto.presence(view))
                    session.send_line(line)
        for key, body in self.receipts.due(now):
            self.publish_system(key, RECEIPTS_STREAM, body)
        for key, of in self.receipts.changes():
            session = self.streams.get(of)  # the publisher, when it publishes here
            if session is not None and session.key == key:
                session.send_line(edgeproto.encode_line(edgeproto.reads(
                    self.receipts.totals(key, of))))
        elapsed = TICK_S if self.last_tick is None else min(1.0, now - self.last_tick)
        self.last_tick = now
        forward, show = self.danmaku.tick({key: True for key in self.channels}, elapsed)
        for name, value in self.danmaku.counters.items():
            self.counters[f"comments_{name}"] = value
        if self.uplink is not None:
            for key, sent in forward:
                for payload in edgeproto.encode_batches(sent):
                    self.uplink.comments_published(key, payload)
        for key, shown in show:
            datagrams = edgeproto.comments_datagrams(shown)  # once for all
            self.show_comments(list(self.members(key)), datagrams)

    def show_comments(self, sessions: list[EdgeConnection], datagrams: list[bytes]) -> None:
        """Write a tick's comments to the channel's sessions, spread over the tick in slices
        of FANOUT_SLICE: thousands written at once would leave at once, and their ACKs come
        back at once, a burst that both ends queue behind."""
        if len(sessions) <= FANOUT_SLICE:
            for session in sessions:
                session.send_comments(datagrams)
            return
        slices = [sessions[i:i + FANOUT_SLICE] for i in range(0, len(sessions), FANOUT_SLICE)]
        loop = asyncio.get_running_loop()
        step = TICK_S / len(slices)
        for n, part in enumerate(slices):
            if n == 0:
                self.show_comments(part, datagrams)
            else:
                loop.call_later(n * step, self.show_comments, part, datagrams)

    async def system_loop(self) -> None:
        """system_tick every TICK_S, on a fixed schedule (a late tick does not push the
        next ones back)."""
        due = time.monotonic()
        while True:
            due += TICK_S
            now = time.monotonic()
            if due < now - TICK_S:
                due = now + TICK_S  # far behind: start the schedule again
            await asyncio.sleep(max(0.0, due - now))
            self.system_tick(time.monotonic())

    def history_lines(self, key: ChannelKey, request: int, limit: int,
                      before: int | None) -> list[bytes]:
        """A page of the channel's history kept here, as the lines that send it."""
        page, more = self.history.page(key, limit, before, time.time())
        self.counters["history_pages"] += 1
        self.counters["history_messages"] += len(page)
        return edgeproto.history_lines(request, [
            edgeproto.kept(k.uid, k.mid, k.body, k.stream, k.seq, k.at, k.n) for k in page],
            more)

    def deliver_replayed(self, key: ChannelKey, uid: str, mid: int, body: str, stream: str,
                         seq: int) -> None:
        """A message its stream's relay sent again: to the sessions here that asked for the
        stream after a point before it (the others have it, or joined after it)."""
        line = None
        for session in self.members(key):
            if seq > session.resume.get(stream, seq):
                line = line or edgeproto.encode_line(
                    edgeproto.deliver(uid, mid, body, stream, seq))
                self.counters["replayed"] += 1
                session.send_line(line)


class EdgeConnection(quic.Protocol):
    """One client's QUIC connection to the edge: the shell of its `EdgeSession`."""

    def __init__(self, *args, edge: EdgeState, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.edge = edge
        self.session = EdgeSession(edge)
        self.source: str | None = None  # the client's address, known at its first packet
        self._refusal: list[Action] | None = None  # to perform once the handshake is done
        limits = edge.limits
        # aioquic offers 128 streams of each kind and has no setting for it; the transport
        # parameters are made from these at the handshake, which has not started yet
        self._quic._local_max_streams_bidi.value = limits.streams_per_session
        self._quic._local_max_streams_uni.value = 0
        self._media_bucket = TokenBucket(limits.media_bytes_per_s, limits.media_burst_bytes,
                                         time.monotonic())
        self.key: ChannelKey | None = None  # the channel joined (kept here for the media path)
        self.stream = _secrets.token_hex(6)  # this session's stream id in the fabric
        self.resume: dict[str, int] = {}  # stream_id -> last delivered, as the client asked
        self.stream_id: int | None = None
        self._deadlines: deque[float] = deque()  # when each queued datagram goes stale
        self._expiry: asyncio.TimerHandle | None = None  # (aioquic's own timer is `_timer`)
        self.wants_presence = False  # the join asked to be shown who is in the channel
        self.written_at = -WRITE_GAP_S  # when its lines were last written (monotonic)
        self.holding = False  # its lines wait for the edge's next flush

    @property
    def grant(self) -> Grant | None:
        return self.session.grant

    @property
    def publishes(self) -> bool:
        return self.session.publishes

    # -- events ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr) -> None:
        if self.source is None:
            self.source = source = str(addr[0])
            self.session.source = source
            if not self.edge.sources.session_opened(source):
                self.source = ""  # not counted as open: nothing to release
                self.edge.counters["refused_sessions"] += 1
                # refused once the handshake is done: a close before it reaches the client
                # without its code and reason (RFC 9000, 10.2.3)
                self._refusal = self.session._close(
                    edgeproto.TOO_MANY_SESSIONS,
                    edgeproto.too_many_sessions(self.edge.limits.sessions_per_source))
        super().datagram_received(data, addr)

    def _released(self) -> None:
        if self.source:
            self.edge.sources.session_closed(self.source)
            self.source = ""

    def quic_event_received(self, event: QuicEvent) -> None:
        if self._refusal is not None:
            if isinstance(event, HandshakeCompleted):
                self._perform(self._refusal)
            return
        if isinstance(event, DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, ConnectionTerminated):
            self._released()
            self._perform(self.session.connection_terminated())

    def connection_lost(self, exc: Exception | None) -> None:
        self._released()
        self._perform(self.session.connection_terminated())
        super().connection_lost(exc)

    def _on_stream_data(self, event: StreamDataReceived) -> None:
        if self.session.closed:
            return
        if self.stream_id is None:
            self.stream_id = event.stream_id
        elif event.stream_id != self.stream_id:
            return  # only the first stream carries the protocol; others are ignored
        self._perform(self.session.data_received(event.data, time.time()))

    def _on_expiry_timer(self) -> None:
        self._expiry = None
        self._perform(self.session.timer_fired(time.time()))

    def _perform(self, actions: list[Action]) -> None:
        edge = self.edge
        for action in actions:
            match action:
                case Send(line):
                    self.send_line(line)
                case PublishMessage(key, uid, mid, body):
                    numbered = None
                    if edge.uplink is not None:
                        numbered = edge.uplink.message_published(key, self.stream, uid, mid,
                                                                 body)
                    stream, seq = numbered or (None, None)
                    edge.deliver_message(key, uid, mid, body, exclude=self, stream=stream,
                                         seq=seq)
                case SendHistory(key, request, limit, before):
                    for line in edge.history_lines(key, request, limit, before):
                        self.send_line(line)
                case Resume(key, after):
                    self.resume.update(after)
                    if len(self.resume) > edgeproto.MAX_RESUME_STREAMS:  # the oldest go
                        for name in list(self.resume)[:-edgeproto.MAX_RESUME_STREAMS]:
                            del self.resume[name]
                    if edge.uplink is not None:
                        for stream, seq in after.items():
                            edge.uplink.replay_requested(key, stream, seq)
                case SetTimer(at):
                    if self._expiry is not None:
                        self._expiry.cancel()
                        self._expiry = None
                    if at is not None:
                        self._expiry = asyncio.get_running_loop().call_later(
                            at - time.time(), self._on_expiry_timer)
                case EnterChannel(key, publisher, presence):
                    if publisher and not edge.has_stream(publisher):
                        self.stream = publisher  # the same publisher moved here: ids go on
                    self.key = key
                    edge.add(self)
                    self.wants_presence = presence
                case PostComment(key, uid, body):
                    edge.post_comment(key, uid, body, self)
                case MarkRead(key, uid, of, upto):
                    edge.mark_read(key, uid, of, upto, reader=self)
                case SendPresence(key):
                    self.send_line(edgeproto.encode_line(edgeproto.presence(
                        edge.presence.view(key))))
                case LeaveChannel():
                    edge.unlink_all(self)
                    edge.remove(self)
                case Link(key, other, name, unlink):
                    if unlink:
                        edge.unlink(key, other, self)
                    else:
                        edge.link(key, other, name, self)
                case PublishingChanged():
                    edge.interest_changed()
                case Close(code, reason):
                    self._quic.close(error_code=code, reason_phrase=reason)
                    self.transmit()

    # -- media -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        if not self.session.media_allowed:
            self._perform(self.session.datagram_received())
            return
        if len(data) > self.edge.max_media_bytes:
            self.edge.counters["media_dropped"] += 1
            return
        if not self._media_bucket.take(time.monotonic(), len(data)):
            self.edge.counters["media_rate_dropped"] += 1
            return
        self.edge.deliver_media(self.key, data, exclude=self)
        if self.edge.uplink is not None:
            self.edge.uplink.media_published(self.key, self.stream, data)

    def send_media(self, data: bytes) -> None:
        """Queue one datagram (MEDIA_DATAGRAM and the media) to this session, dropping its
        oldest queued ones beyond the cap (aioquic queues datagrams without bound and never
        expires them)."""
        self._queue_datagram(data)
        self.edge.counters["media_forwarded"] += 1
        self.transmit_soon()

    def send_comments(self, datagrams: list[bytes]) -> None:
        """Queue a tick's comments (`edgeproto.comments_datagrams`), as media are queued:
        best-effort, dropped when they wait too long."""
        for data in datagrams:
            self._queue_datagram(data, COMMENTS_DEADLINE_S)
        self.transmit_soon()

    def _queue_datagram(self, data: bytes, deadline_s: float | None = None) -> None:
        pending = self._quic._datagrams_pending
        while len(pending) >= self.edge.max_queued_datagrams:
            pending.popleft()
            self.edge.counters["media_dropped"] += 1
        self._sync_deadlines()
        self._quic.send_datagram_frame(data)
        self._deadlines.append(time.monotonic() + (
            self.edge.media_deadline_s if deadline_s is None else deadline_s))

    def _sync_deadlines(self) -> None:
        """Forget the deadlines of datagrams that left aioquic's queue (sent or dropped): the
        deadlines kept are those of its newest entries."""
        times, pending = self._deadlines, self._quic._datagrams_pending
        while len(times) > len(pending):
            times.popleft()

    def transmit(self) -> None:
        """Drop datagrams that waited past their deadline, then send."""
        times = self._deadlines
        if times:
            pending = self._quic._datagrams_pending
            self._sync_deadlines()
            stale = time.monotonic()
            while times and len(times) == len(pending) and times[0] < stale:
                times.popleft()
                pending.popleft()
                self.edge.counters["media_expired"] += 1
        super().transmit()

    def send_line(self, line: bytes) -> None:
        """Write one encoded line to the client's stream. (A closed session sends nothing: it
        returns no `Send` after its `Close` and is no channel's member.)"""
        if self.stream_id is None:
            return
        self._quic.send_stream_data(self.stream_id, line)
        if self.holding:
            return
        now = time.monotonic()
        if now - self.written_at >= WRITE_GAP_S:
            self.written_at = now
            self.transmit_soon()
        else:
            self.holding = True
            self.edge.hold(self)


def server_configuration(cert: Path | str, key: Path | str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
                               max_data=MAX_SESSION_DATA, max_stream_data=MAX_SESSION_DATA)
    config.load_cert_chain(str(cert), str(key))
    return config


async def start_edge(host: str, port: int, cert: Path | str, key: Path | str,
                     app_keys: Mapping[str, tuple[bytes, ...]], region: str, zones: set[str],
                     fabric: Uplink | None = None, **limits) -> tuple[QuicServer, EdgeState]:
    """Serve the edge on `host`:`port` (0 picks a free port; see `EdgeState.port`), handing what
    its publishers send to `fabric`. Close it with `server.close()`."""
    edge = EdgeState(app_keys, region, zones, uplink=fabric, **limits)
    edge.system_task = asyncio.get_running_loop().create_task(edge.system_loop())

    def protocol(*args, **kwargs) -> EdgeConnection:
        return EdgeConnection(*args, edge=edge, **kwargs)

    server = await quic.serve(host, port, configuration=server_configuration(cert, key),
                         create_protocol=protocol)
    sock = server._transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    edge.port = server._transport.get_extra_info("sockname")[1]
    return server, edge


async def watch_certificate(server: QuicServer, cert: Path | str, key: Path | str,
                            interval_s: float = CERT_CHECK_S) -> None:
    """Serve a reissued certificate from the next connection on, without a restart: the files
    are checked every `interval_s`, and a pair that loads replaces the server's configuration
    (aioquic has no setting for it; QuicServer makes each connection from `_configuration`).
    Sessions already open keep their handshake; a pair that does not load is logged and the
    old one kept."""
    stamp = files_stamp(cert, key)
    while True:
        await asyncio.sleep(interval_s)
        now = files_stamp(cert, key)
        if now == stamp:
            continue
        try:
            server._configuration = server_configuration(cert, key)
        except (OSError, ValueError) as e:
            log.error("keeping the edge's certificate: %s: %s", cert, e)
            continue
        stamp = now
        log.info("edge certificate reloaded from %s", cert)


__all__ = ["EdgeConnection", "EdgeState", "Uplink", "start_edge", "watch_certificate"]
