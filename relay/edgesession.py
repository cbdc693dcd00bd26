"""One client's session on the edge as a state machine without I/O: join, renewal, expiry,
message checks, privileges and the drained refusal of the client-edge protocol
(`skymesh.edgeproto`). It sits on the QUIC connection as aioquic's H3 layer sits on
`QuicConnection`: the shell (`relay.edge`) feeds it what arrived and the time, and performs the
actions it returns, in order. Times are Unix seconds, as in tokens.

Media take a shortcut, because they come thousands of times a second: while `media_allowed`
holds, the shell forwards each datagram itself without asking; otherwise it hands the datagram
here (`datagram_received`) to be dropped or refused.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from skymesh import edgeproto
from skymesh.edgeproto import ProtocolError
from skymesh.ratelimit import TokenBucket
from skymesh.token import Grant, TokenError, privilege_list, verify

# -- actions: what the shell does for the session ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write `line` (one encoded line) to the client's stream."""
    line: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with application error `code` and `reason`."""
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `timer_fired` at Unix time `at` (at once if past), instead of any earlier timer;
    None: no timer."""
    at: float | None


@dataclass(frozen=True, slots=True)
class EnterChannel:
    """The session is now a member of channel `key` (zone, "app/channel"), publishing (if it
    does) as `publisher` when the client named one (`edgeproto.publisher_of`); shown who is
    in the channel as it changes when `presence`."""
    key: tuple[str, str]
    publisher: str = ""
    presence: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """Link channel `key` to channel `other` (its name among the relays), as client channel
    `name`, for this session; `unlink`: end the link."""
    key: tuple[str, str]
    other: tuple[str, str]
    name: str
    unlink: bool = False


@dataclass(frozen=True, slots=True)
class PostComment:
    """User `uid`'s comment `body` for channel `key` (best-effort, thinned)."""
    key: tuple[str, str]
    uid: str
    body: str


@dataclass(frozen=True, slots=True)
class MarkRead:
    """User `uid` read publisher `of`'s messages up to id `upto` in channel `key`."""
    key: tuple[str, str]
    uid: str
    of: str
    upto: int


@dataclass(frozen=True, slots=True)
class SendPresence:
    """Send the session who is in channel `key` now."""
    key: tuple[str, str]


@dataclass(frozen=True, slots=True)
class LeaveChannel:
    """The session is no longer a member of channel `key`."""
    key: tuple[str, str]


@dataclass(frozen=True, slots=True)
class PublishingChanged:
    """A renewal gave or took the session's publishing privileges: the edge's interest in its
    channel (has publishers) may have changed."""


@dataclass(frozen=True, slots=True)
class PublishMessage:
    """Message `mid` with `body` from `uid`, for the channel's other members here and, through
    the fabric, elsewhere."""
    key: tuple[str, str]
    uid: str
    mid: int
    body: str


@dataclass(frozen=True, slots=True)
class Resume:
    """Ask the relays of the streams in `after` for their messages after the sequence numbers
    it gives (the client delivered those before it moved here), for this session."""
    key: tuple[str, str]
    after: dict[str, int]


@dataclass(frozen=True, slots=True)
class SendHistory:
    """Send the session a page of its channel's history kept here: request `request`, up to
    `limit` messages numbered below `before` (None: the newest)."""
    key: tuple[str, str]
    request: int
    limit: int
    before: int | None = None


Action = Send | Close | SetTimer | EnterChannel | LeaveChannel | PublishingChanged \
    | PublishMessage | Resume | SendHistory | SendPresence | MarkRead | PostComment | Link


@dataclass(frozen=True)
class EdgeLimits:
    """What one client may ask of an edge before it is refused (flood limits). Every client
    of a test on one machine shares the loopback address: the per-address limits are set for
    many real users behind one NAT, not for one user."""

    messages_per_s: float = 50.0  # per session; beyond: closed RATE_LIMITED
    messages_burst: float = 200.0
    media_bytes_per_s: float = 4_000_000.0  # per session (32 Mbit/s); beyond: dropped
    media_burst_bytes: float = 1_000_000.0
    sessions_per_source: int = 256  # open at once per address; beyond: TOO_MANY_SESSIONS
    joins_per_source_per_s: float = 50.0  # joins (token checks) per address; beyond:
    joins_per_source_burst: float = 500.0  # RATE_LIMITED before the token is checked
    streams_per_session: int = 4  # bidirectional streams a client may open (one is used)
    sources_tracked: int = 100_000  # join buckets kept; the least recently used go
    comments_per_user_per_s: float = 1.0  # danmaku: beyond, refused (the session stays)
    comments_per_user_burst: float = 3.0
    comments_shown_per_s: float = 20.0  # a session is shown at most this many a second
    comments_forwarded_per_s: float = 200.0  # per channel, sent on to the other edges
    links_per_session: int = 16  # co-hosting: channels one session may link its own to


def parse_limits(text: str, base: EdgeLimits | None = None) -> EdgeLimits:
    """EdgeLimits from "name=value,..." (names as the fields of EdgeLimits), over `base`;
    ValueError names what is wrong."""
    fields = {f.name: f.type for f in dataclasses.fields(EdgeLimits)}
    changes: dict[str, float | int] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in fields:
            raise ValueError(f"{item!r}: expected NAME=VALUE, NAME one of "
                             f"{', '.join(f.replace('_', '-') for f in fields)}")
        try:
            number = int(value) if fields[name] in ("int", int) else float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value.strip()!r} is not a number") from None
        if not number > 0:
            raise ValueError(f"{item!r}: must be positive")
        changes[name] = number
    limits = dataclasses.replace(base or EdgeLimits(), **changes)
    if limits.messages_burst < 1 or limits.joins_per_source_burst < 1:
        raise ValueError("bursts must be at least 1")
    return limits


@dataclass
class SourceLimits:
    """Sessions open and joins per client address, on an explicit clock. Pure."""

    limits: EdgeLimits = field(default_factory=EdgeLimits)
    open: dict[str, int] = field(default_factory=dict)
    joins: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def session_opened(self, source: str) -> bool:
        """Whether one more session from `source` may stay open (if so it is counted)."""
        n = self.open.get(source, 0)
        if n >= self.limits.sessions_per_source:
            return False
        self.open[source] = n + 1
        return True

    def session_closed(self, source: str) -> None:
        n = self.open.get(source, 0) - 1
        if n > 0:
            self.open[source] = n
        else:
            self.open.pop(source, None)

    def join_allowed(self, source: str, now: float) -> bool:
        bucket = self.joins.get(source)
        if bucket is None:
            lim = self.limits
            bucket = TokenBucket(lim.joins_per_source_per_s, lim.joins_per_source_burst, now)
            self.joins[source] = bucket
            while len(self.joins) > lim.sources_tracked:
                self.joins.popitem(last=False)
        else:
            self.joins.move_to_end(source)
        return bucket.take(now)


class EdgeConfig(Protocol):
    """What a session reads of its edge, as it is at each event (the controller reconfigures
    the edge while sessions run), and where it counts."""

    region: str
    zones: frozenset[str]
    app_keys: Mapping[str, tuple[bytes, ...]]  # app id -> public keys; no secret
    drained: bool
    counters: dict[str, int]
    limits: EdgeLimits
    sources: SourceLimits


class EdgeSession:
    """One client's session: not joined, joined to one channel (`grant`, `key`), or closed.
    After a close, by a refusal or by the connection's end, every event returns no action."""

    def __init__(self, edge: EdgeConfig, source: str = "") -> None:
        self.edge = edge
        self.source = source  # the client's address, for the per-address limits
        self._messages: TokenBucket | None = None  # the publisher's message rate
        self.grant: Grant | None = None
        self.key: tuple[str, str] | None = None  # the channel joined
        self.closed = False
        self.media_allowed = False  # joined, open, and granted publish-media
        self._lines = edgeproto.LineDecoder()
        self._timer_at: float | None = None
        self._noticed = False  # "token-expiring" went out for the current grant
        self.links: set[tuple[str, str]] = set()  # channels this session linked its own to

    @property
    def publishes(self) -> bool:
        return self.grant is not None and bool(
            self.grant.privileges & {"publish-media", "publish-messages"})

    # -- events ------------------------------------------------------------------------------

    def data_received(self, data: bytes, now: float) -> list[Action]:
        """Bytes of the client's stream."""
        if self.closed:
            return []
        actions: list[Action] = []
        try:
            for msg in self._lines.feed(data):
                actions += self.line_received(msg, now)
                if self.closed:
                    break
        except ProtocolError as e:
            actions += self._refuse(e)
        return actions

    def line_received(self, msg: dict, now: float) -> list[Action]:
        """One object the client sent (a line of its stream, read)."""
        if self.closed:
            return []
        kind = msg.get("type")
        if self.grant is None:
            if kind != edgeproto.JOIN:
                return self._refuse(ProtocolError(edgeproto.JOIN_FIRST))
            return self._join(msg, now)
        if kind == edgeproto.MESSAGE:
            return self._message(msg, now)
        if kind == edgeproto.RENEW:
            return self._renew(msg, now)
        if kind == edgeproto.RESUME:
            return self._resume(msg, now)
        if kind == edgeproto.HISTORY:
            return self._history(msg, now)
        if kind == edgeproto.READ:
            return self._read(msg, now)
        if kind == edgeproto.COMMENT:
            return self._comment(msg)
        if kind in (edgeproto.LINK, edgeproto.UNLINK):
            return self._link(msg, now, kind == edgeproto.UNLINK)
        return self._refuse(ProtocolError(edgeproto.unexpected_kind(kind)))

    def datagram_received(self) -> list[Action]:
        """A media datagram arrived while `media_allowed` did not hold: dropped (and counted)
        before the join, refused without publish-media, ignored once closed."""
        if self.closed:
            return []
        if self.grant is None:
            self.edge.counters["media_dropped"] += 1
            return []
        return self._require("publish-media")

    def timer_fired(self, now: float) -> list[Action]:
        """The timer of the last `SetTimer` fired: the expiry notice, then the expiry."""
        if self.closed or self._timer_at is None or self.grant is None:
            return []
        if now < self._timer_at:  # early (the loop's clock is not the wall clock): wait on
            return [SetTimer(self._timer_at)]
        if not self._noticed:
            self._noticed = True
            self._timer_at = float(self.grant.expires_at)
            return [Send(edgeproto.encode_line(edgeproto.token_expiring(self.grant.expires_at))),
                    SetTimer(self._timer_at)]
        self._timer_at = None
        return self._refuse(TokenError("expired", edgeproto.EXPIRED))

    def connection_terminated(self) -> list[Action]:
        """The QUIC connection ended (either side, any reason): the session leaves."""
        if self.closed:
            return []
        self.closed = True
        self.media_allowed = False
        return self._leave()

    # -- join and renewal --------------------------------------------------------------------

    def _check(self, token: object, channel: str, now: float) -> tuple[Grant, str]:
        """The grant of a token this edge accepts for `channel`, and the channel's name among
        the relays."""
        edge = self.edge
        grant = verify(token, edge.app_keys, now=int(now), channel=channel,
                       need=("join",))
        if grant.zone not in edge.zones:
            raise TokenError("wrong-zone", edgeproto.wrong_zone(grant.zone, edge.region,
                                                                edge.zones))
        return grant, edgeproto.channel_id(grant.app, grant.channel)

    def _join(self, msg: dict, now: float) -> list[Action]:
        edge = self.edge
        if edge.drained:
            return self._close(edgeproto.DRAINED_ERROR, edgeproto.drained(edge.region))
        channel = msg.get("channel")
        if not isinstance(channel, str) or not channel:
            return self._refuse(ProtocolError(edgeproto.JOIN_NEEDS_CHANNEL))
        try:
            after = edgeproto.resume_points(msg.get("resume"))
            publisher = edgeproto.publisher_of(msg.get("publisher"))
            history = edgeproto.join_history(msg.get("history"))
            presence = edgeproto.join_presence(msg.get("presence"))
        except ProtocolError as e:
            return self._refuse(e)
        if not edge.sources.join_allowed(self.source, now):
            # before the token's signature is checked: that is what a join flood costs
            lim = edge.limits
            edge.counters["refused_rate"] += 1
            return self._close(edgeproto.RATE_LIMITED, edgeproto.joins_too_fast(
                lim.joins_per_source_per_s, lim.joins_per_source_burst))
        try:
            grant, name = self._check(msg.get("token"), channel, now)
        except (TokenError, ProtocolError) as e:
            return self._refuse(e)
        self._grant(grant)
        self.key = (grant.zone, name)
        self._messages = TokenBucket(edge.limits.messages_per_s, edge.limits.messages_burst, now)
        edge.counters["joined"] += 1
        reply = edgeproto.joined(grant.uid, grant.channel, edge.region, grant.zone,
                                 privilege_list(grant.privileges), grant.expires_at)
        actions: list[Action] = [self._arm(), EnterChannel(self.key, publisher, presence),
                                 Send(edgeproto.encode_line(reply))]
        if after:
            edge.counters["resumed"] += 1
            actions.append(Resume(self.key, after))
        if history:
            actions.append(SendHistory(self.key, 0, history))
        if presence:
            actions.append(SendPresence(self.key))
        return actions

    def _resume(self, msg: dict, now: float) -> list[Action]:
        assert self.key is not None
        # each costs the relays a request per stream: paced as the session's messages are
        too_fast = self._paced(now)
        if too_fast:
            return too_fast
        try:
            after = edgeproto.resume_points(msg.get("after"))
        except ProtocolError as e:
            return self._refuse(e)
        return [Resume(self.key, after)] if after else []

    def _history(self, msg: dict, now: float) -> list[Action]:
        assert self.key is not None
        too_fast = self._paced(now)  # a page is up to a hundred messages' worth of work
        if too_fast:
            return too_fast
        try:
            request, limit, before = edgeproto.history_asked(msg)
        except ProtocolError as e:
            return self._refuse(e)
        return [SendHistory(self.key, request, limit, before)]

    def _link(self, msg: dict, now: float, unlink: bool) -> list[Action]:
        """Co-hosting: a link needs "relay" in this session's token and a token for the
        other channel, of the same app and zone, granting it too. A link refused is said
        ("failed", with the reason); the session goes on."""
        assert self.key is not None and self.grant is not None
        too_fast = self._paced(now)
        if too_fast:
            return too_fast
        try:
            channel, token = edgeproto.link_asked(msg)
        except ProtocolError as e:
            return self._refuse(e)
        grant = self.grant
        if unlink:
            other = (grant.zone, edgeproto.channel_id(grant.app, channel))
            if other not in self.links:
                return []
            self.links.discard(other)
            return [Link(self.key, other, channel, unlink=True)]
        try:
            if "relay" not in grant.privileges:
                raise TokenError("missing-privilege", edgeproto.missing_privilege("relay"))
            theirs, name = self._check(token, channel, now)
            if "relay" not in theirs.privileges:
                raise TokenError("missing-privilege",
                                 f"the token for {channel!r} does not grant relay")
            if (theirs.app, theirs.zone) != (grant.app, grant.zone):
                raise TokenError("wrong-zone", "a link is between channels of one app and "
                                 "one zone")
            other = (theirs.zone, name)
            if other == self.key:
                raise ProtocolError("a channel cannot be linked to itself")
            if other not in self.links and len(self.links) >= self.edge.limits.links_per_session:
                raise ProtocolError(f"at most {self.edge.limits.links_per_session} links a "
                                    "session (edge limit links-per-session)")
        except (TokenError, ProtocolError) as e:
            return [Send(edgeproto.encode_line(edgeproto.link_state(
                channel, "failed", e.reason)))]
        self.links.add(other)
        return [Link(self.key, other, channel)]

    def _comment(self, msg: dict) -> list[Action]:
        """Any joined user may comment; the edge's per-user limit (relay/danmaku.py)
        refuses a flood without ending the session."""
        assert self.key is not None and self.grant is not None
        try:
            body = edgeproto.commented(msg)
        except ProtocolError as e:
            return self._refuse(e)
        return [PostComment(self.key, self.grant.uid, body)]

    def _read(self, msg: dict, now: float) -> list[Action]:
        assert self.key is not None and self.grant is not None
        too_fast = self._paced(now)
        if too_fast:
            return too_fast
        try:
            of, upto = edgeproto.read_asked(msg)
        except ProtocolError as e:
            return self._refuse(e)
        return [MarkRead(self.key, self.grant.uid, of, upto)]

    def _renew(self, msg: dict, now: float) -> list[Action]:
        assert self.grant is not None
        old = self.grant
        try:
            grant, _ = self._check(msg.get("token"), old.channel, now)
            if (grant.app, grant.uid, grant.zone) != (old.app, old.uid, old.zone):
                raise ProtocolError(edgeproto.RENEWAL_MISMATCH)
        except (TokenError, ProtocolError) as e:
            return self._refuse(e)
        was_publishing = self.publishes
        self._grant(grant)
        self.edge.counters["renewed"] += 1
        actions: list[Action] = [self._arm()]
        if self.publishes != was_publishing:
            actions.append(PublishingChanged())
        actions.append(Send(edgeproto.encode_line(edgeproto.renewed(
            grant.expires_at, privilege_list(grant.privileges)))))
        return actions

    def _grant(self, grant: Grant) -> None:
        self.grant = grant
        self.media_allowed = "publish-media" in grant.privileges

    def _arm(self) -> SetTimer:
        """The expiry notice's timer: `EXPIRY_NOTICE_S` before expiry, at most half the
        token's lifetime (a token already within it is warned of at once)."""
        assert self.grant is not None
        grant = self.grant
        notice = min(edgeproto.EXPIRY_NOTICE_S, (grant.expires_at - grant.issued_at) / 2)
        self._noticed = False
        self._timer_at = grant.expires_at - notice
        return SetTimer(self._timer_at)

    # -- messages ----------------------------------------------------------------------------

    def _message(self, msg: dict, now: float) -> list[Action]:
        assert self.grant is not None and self.key is not None
        refused = self._require("publish-messages")
        if refused:
            return refused
        too_fast = self._paced(now)
        if too_fast:
            return too_fast
        try:
            mid, body = edgeproto.published(msg)
        except ProtocolError as e:
            return self._refuse(e)
        self.edge.counters["messages"] += 1
        return [PublishMessage(self.key, self.grant.uid, mid, body)]

    def _paced(self, now: float) -> list[Action]:
        """No action while the session keeps to its message rate, else the close."""
        if self._messages is None or self._messages.take(now):
            return []
        lim = self.edge.limits
        self.edge.counters["refused_rate"] += 1
        return self._close(edgeproto.RATE_LIMITED, edgeproto.messages_too_fast(
            lim.messages_per_s, lim.messages_burst))

    # -- refusals ----------------------------------------------------------------------------

    def _require(self, privilege: str) -> list[Action]:
        """No action when the grant has `privilege`, else the refusal."""
        assert self.grant is not None
        if privilege in self.grant.privileges:
            return []
        return self._refuse(TokenError("missing-privilege",
                                       edgeproto.missing_privilege(privilege)))

    def _refuse(self, error: TokenError | ProtocolError) -> list[Action]:
        return self._close(error.number, error.reason)

    def _close(self, code: int, reason: str) -> list[Action]:
        self.closed = True
        self.media_allowed = False
        self.edge.counters["refused"] += 1
        by_reason = f"refused.{edgeproto.CLOSE_NAMES.get(code, 'other')}"
        self.edge.counters[by_reason] = self.edge.counters.get(by_reason, 0) + 1
        return [*self._leave(), Close(code, reason)]

    def _leave(self) -> list[Action]:
        actions: list[Action] = []
        if self._timer_at is not None:
            self._timer_at = None
            actions.append(SetTimer(None))
        if self.grant is not None and self.key is not None:
            actions.append(LeaveChannel(self.key))
        return actions
