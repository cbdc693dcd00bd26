"""The client edge: an aioquic server (ALPN ``skymesh/1``) where SDK sessions join channels,
publish media (QUIC datagrams) and messages (JSON lines on their stream), and receive what the
channel's other publishers send, here or, through the relay's fabric, in other regions.

Wire protocol on the client's first bidirectional stream, one JSON object per line:

- client -> edge: ``{"type":"join","token":T,"channel":C}`` first, then
  ``{"type":"message","id":N,"body":B}`` (needs ``publish-messages``) and
  ``{"type":"renew","token":T}`` (a fresh token for the same app, channel, user and zone);
- edge -> client: ``{"type":"joined","uid":U,"channel":C,"region":R,"privileges":[...],
  "expires_at":E}``, ``{"type":"message","from":U,"id":N,"body":B}`` for each message of
  another publisher, ``{"type":"renewed","expires_at":E}``, and
  ``{"type":"token-expiring","expires_at":E}`` shortly before the token runs out.

Refusals close the QUIC connection with the `skymesh.token.ERROR_CODES` number of the
`TokenError` as the application error code and its reason as the reason phrase; so does the
token's expiry without a renewal.

A channel is known to the fabric as (zone, "app/channel").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets as _secrets
import socket
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)

from skymesh.net import quic
from skymesh.token import Grant, TokenError, privilege_list, verify

ALPN = quic.ALPN
MAX_MEDIA_BYTES = 1150  # larger datagrams are dropped (and counted)
MAX_QUEUED_DATAGRAMS = 64  # per session; the oldest are dropped beyond this
MEDIA_DEADLINE_S = 0.015  # media queued longer than this is dropped, not sent late
MAX_LINE_BYTES = 64 * 1024  # a control/message line longer than this is malformed
MAX_MESSAGE_BYTES = 900  # UTF-8 bytes of a message body: one fabric datagram, worst case
MAX_CHANNEL_ID = 64  # bytes of "app/channel" (the fabric header's limit)
# The kernel queues what the edge has not read yet; under overload a big receive buffer is a
# queue of stale media. 96 KiB (the kernel doubles it) holds about 12 ms at the edge's top rate.
RECEIVE_BUFFER = 96 * 1024
EXPIRY_NOTICE_S = 30.0  # "token-expiring" this long before expiry (at most half the TTL)

COUNTERS = ("joined", "refused", "renewed", "media_forwarded", "media_dropped",
            "media_expired", "messages")

ChannelKey = tuple[str, str]  # (zone, "app/channel")


class Fabric(Protocol):
    """Where the edge hands what its publishers send for other regions (the relay node)."""

    def media_published(self, key: ChannelKey, stream: str, data: bytes) -> None: ...

    def message_published(self, key: ChannelKey, stream: str, uid: str, mid: int,
                          body: str) -> None: ...

    def interest_changed(self) -> None: ...


class EdgeState:
    """What one edge knows: its region, the zones it may serve, the app secrets, the sessions
    joined to each channel, and its counters."""

    def __init__(self, secrets: Mapping[str, bytes], region: str, zones: set[str],
                 max_media_bytes: int = MAX_MEDIA_BYTES,
                 max_queued_datagrams: int = MAX_QUEUED_DATAGRAMS,
                 media_deadline_s: float = MEDIA_DEADLINE_S,
                 fabric: Fabric | None = None) -> None:
        self.secrets = dict(secrets)
        self.region = region
        self.zones = frozenset(zones)
        self.drained = False
        self.max_media_bytes = max_media_bytes
        self.max_queued_datagrams = max_queued_datagrams
        self.media_deadline_s = media_deadline_s
        self.fabric = fabric
        self.channels: dict[ChannelKey, set[EdgeSession]] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.port: int | None = None

    def configure(self, secrets: Mapping[str, bytes], zones: set[str],
                  drained: bool = False) -> None:
        """New app secrets and zones (from the controller); joined sessions keep their grant
        until they renew or it expires. A drained edge refuses new sessions only."""
        self.secrets = dict(secrets)
        self.zones = frozenset(zones)
        self.drained = drained

    def members(self, key: ChannelKey) -> set[EdgeSession]:
        return self.channels.get(key, set())

    def interest(self) -> dict[ChannelKey, tuple[bool, bool]]:
        """(has subscribers, has publishers) for each channel with sessions here."""
        return {key: (True, any(s.publishes for s in sessions))
                for key, sessions in self.channels.items()}

    def add(self, session: EdgeSession) -> None:
        assert session.key is not None
        self.channels.setdefault(session.key, set()).add(session)
        self._changed()

    def remove(self, session: EdgeSession) -> None:
        members = self.channels.get(session.key) if session.key else None
        if members is None or session not in members:
            return
        members.discard(session)
        if not members:
            del self.channels[session.key]
        self._changed()

    def _changed(self) -> None:
        if self.fabric is not None:
            self.fabric.interest_changed()

    def deliver_media(self, key: ChannelKey, data: bytes,
                      exclude: EdgeSession | None = None) -> None:
        for session in self.members(key):
            if session is not exclude:
                session.send_media(data)

    def deliver_message(self, key: ChannelKey, uid: str, mid: int, body: str,
                        exclude: EdgeSession | None = None) -> None:
        out = {"type": "message", "from": uid, "id": mid, "body": body}
        for session in self.members(key):
            if session is not exclude:
                session.send_line(out)


class EdgeSession(quic.Protocol):
    """One client's QUIC connection to the edge."""

    def __init__(self, *args, edge: EdgeState, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.edge = edge
        self.grant: Grant | None = None
        self.key: ChannelKey | None = None
        self.stream = _secrets.token_hex(6)  # this session's stream id in the fabric
        self.stream_id: int | None = None
        self._buffer = b""
        self._closing = False
        self._media_times: deque[float] = deque()  # enqueue times of queued datagrams
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def publishes(self) -> bool:
        return self.grant is not None and bool(
            self.grant.privileges & {"publish-media", "publish-messages"})

    # -- events ----------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, ConnectionTerminated):
            self._closing = True
            self._leave()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    def _leave(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.edge.remove(self)

    def _on_stream_data(self, event: StreamDataReceived) -> None:
        if self._closing:
            return
        if self.stream_id is None:
            self.stream_id = event.stream_id
        elif event.stream_id != self.stream_id:
            return  # only the first stream carries the protocol; others are ignored
        self._buffer += event.data
        while b"\n" in self._buffer and not self._closing:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._on_line(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._refuse(TokenError("malformed", "line too long"))

    def _on_line(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            self._refuse(TokenError("malformed", "a line is not JSON"))
            return
        if not isinstance(msg, dict):
            self._refuse(TokenError("malformed", "a line is not a JSON object"))
            return
        kind = msg.get("type")
        if self.grant is None:
            if kind != "join":
                self._refuse(TokenError("malformed", "the first message must be a join"))
            else:
                self._join(msg)
        elif kind == "message":
            self._on_message(msg)
        elif kind == "renew":
            self._renew(msg)
        else:
            self._refuse(TokenError("malformed", f"unexpected message type {kind!r}"))

    # -- join, renewal, expiry -------------------------------------------------------------

    def _check(self, token: object, channel: str) -> Grant:
        grant = verify(token, self.edge.secrets, channel=channel, need=("join",))
        if grant.zone not in self.edge.zones:
            raise TokenError("wrong-zone", f"the token is for zone {grant.zone!r}; edge "
                             f"region {self.edge.region!r} serves "
                             f"{', '.join(sorted(self.edge.zones)) or 'no zone'}")
        if len(f"{grant.app}/{grant.channel}".encode()) > MAX_CHANNEL_ID:
            raise TokenError("malformed", f"app and channel together must be at most "
                             f"{MAX_CHANNEL_ID - 1} bytes")
        return grant

    def _join(self, msg: dict) -> None:
        token, channel = msg.get("token"), msg.get("channel")
        if self.edge.drained:
            self._close(quic.DRAINED_ERROR, f"region {self.edge.region!r} is drained: "
                        "connect to another region")
            return
        if not isinstance(channel, str) or not channel:
            self._refuse(TokenError("malformed", "join needs a channel"))
            return
        try:
            grant = self._check(token, channel)
        except TokenError as e:
            self._refuse(e)
            return
        self.grant = grant
        self.key = (grant.zone, f"{grant.app}/{grant.channel}")
        self._arm_expiry()
        self.edge.add(self)
        self.edge.counters["joined"] += 1
        self.send_line({"type": "joined", "uid": grant.uid, "channel": grant.channel,
                        "region": self.edge.region, "zone": grant.zone,
                        "privileges": privilege_list(grant.privileges),
                        "expires_at": grant.expires_at})

    def _renew(self, msg: dict) -> None:
        assert self.grant is not None
        try:
            grant = self._check(msg.get("token"), self.grant.channel)
            if (grant.app, grant.uid, grant.zone) != (self.grant.app, self.grant.uid,
                                                      self.grant.zone):
                raise TokenError("malformed", "a renewal must be for the same app, user and "
                                 "zone as the session")
        except TokenError as e:
            self._refuse(e)
            return
        was_publishing = self.publishes
        self.grant = grant
        self._arm_expiry()
        self.edge.counters["renewed"] += 1
        if self.publishes != was_publishing:
            self.edge._changed()
        self.send_line({"type": "renewed", "expires_at": grant.expires_at,
                        "privileges": privilege_list(grant.privileges)})

    def _arm_expiry(self) -> None:
        assert self.grant is not None
        if self._expiry is not None:
            self._expiry.cancel()
        left = self.grant.expires_at - time.time()
        notice = min(EXPIRY_NOTICE_S, (self.grant.expires_at - self.grant.issued_at) / 2)
        loop = asyncio.get_running_loop()
        if left > notice:
            self._expiry = loop.call_later(left - notice, self._expiring)
        else:  # already within the notice: say so at once (after the joined/renewed line)
            self._expiry = loop.call_soon(self._expiring)

    def _expiring(self) -> None:
        assert self.grant is not None
        self.send_line({"type": "token-expiring", "expires_at": self.grant.expires_at})
        self._expiry = asyncio.get_running_loop().call_later(
            max(self.grant.expires_at - time.time(), 0.0), self._expired)

    def _expired(self) -> None:
        self._expiry = None
        self._refuse(TokenError("expired", "the token expired and was not renewed"))

    def _refuse(self, error: TokenError) -> None:
        self._close(error.number, error.reason)

    def _close(self, error_code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.edge.counters["refused"] += 1
        self._leave()
        self._quic.close(error_code=error_code, reason_phrase=reason)
        self.transmit()

    def _require(self, privilege: str) -> bool:
        assert self.grant is not None
        if privilege in self.grant.privileges:
            return True
        self._refuse(TokenError("missing-privilege",
                                f"the token does not grant {privilege}"))
        return False

    # -- media -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        if self._closing:
            return
        if self.grant is None:
            self.edge.counters["media_dropped"] += 1  # not joined yet
            return
        if not self._require("publish-media"):
            return
        if len(data) > self.edge.max_media_bytes:
            self.edge.counters["media_dropped"] += 1
            return
        self.edge.deliver_media(self.key, data, exclude=self)
        if self.edge.fabric is not None:
            self.edge.fabric.media_published(self.key, self.stream, data)

    def send_media(self, data: bytes) -> None:
        """Queue one datagram to this session, dropping its oldest queued ones beyond the cap
        (aioquic queues datagrams without bound and never expires them)."""
        pending = self._quic._datagrams_pending
        while len(pending) >= self.edge.max_queued_datagrams:
            pending.popleft()
            self.edge.counters["media_dropped"] += 1
        self._sync_media_times()
        self._quic.send_datagram_frame(data)
        self._media_times.append(time.monotonic())
        self.edge.counters["media_forwarded"] += 1
        self.transmit_soon()

    def _sync_media_times(self) -> None:
        """Forget the enqueue times of datagrams that left aioquic's queue (sent or dropped):
        the times kept are those of its newest entries."""
        times, pending = self._media_times, self._quic._datagrams_pending
        while len(times) > len(pending):
            times.popleft()

    def transmit(self) -> None:
        """Drop media that waited past its deadline, then send."""
        times = self._media_times
        if times:
            pending = self._quic._datagrams_pending
            self._sync_media_times()
            stale = time.monotonic() - self.edge.media_deadline_s
            while times and len(times) == len(pending) and times[0] < stale:
                times.popleft()
                pending.popleft()
                self.edge.counters["media_expired"] += 1
        super().transmit()

    # -- messages --------------------------------------------------------------------------

    def _on_message(self, msg: dict) -> None:
        if not self._require("publish-messages"):
            return
        mid, body = msg.get("id"), msg.get("body")
        if not isinstance(mid, int) or isinstance(mid, bool) or not 0 <= mid < 2**63 \
                or not isinstance(body, str):
            self._refuse(TokenError("malformed", "a message needs an integer id and a "
                                    "string body"))
            return
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            self._refuse(TokenError("malformed", f"a message body is at most "
                                    f"{MAX_MESSAGE_BYTES} bytes of UTF-8"))
            return
        assert self.grant is not None
        self.edge.counters["messages"] += 1
        self.edge.deliver_message(self.key, self.grant.uid, mid, body, exclude=self)
        if self.edge.fabric is not None:
            self.edge.fabric.message_published(self.key, self.stream, self.grant.uid, mid,
                                               body)

    def send_line(self, obj: dict) -> None:
        if self._closing or self.stream_id is None:
            return
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self._quic.send_stream_data(self.stream_id, data)
        self.transmit_soon()


def server_configuration(cert: Path | str, key: Path | str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                               max_datagram_frame_size=quic.MAX_DATAGRAM_FRAME_SIZE)
    config.load_cert_chain(str(cert), str(key))
    return config


async def start_edge(host: str, port: int, cert: Path | str, key: Path | str,
                     secrets: Mapping[str, bytes], region: str, zones: set[str],
                     fabric: Fabric | None = None, **limits) -> tuple[QuicServer, EdgeState]:
    """Serve the edge on `host`:`port` (0 picks a free port; see `EdgeState.port`). Close it
    with `server.close()`."""
    edge = EdgeState(secrets, region, zones, fabric=fabric, **limits)

    def protocol(*args, **kwargs) -> EdgeSession:
        return EdgeSession(*args, edge=edge, **kwargs)

    server = await serve(host, port, configuration=server_configuration(cert, key),
                         create_protocol=protocol)
    sock = server._transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    edge.port = server._transport.get_extra_info("sockname")[1]
    return server, edge


__all__ = ["ALPN", "ChannelKey", "EdgeSession", "EdgeState", "Fabric", "start_edge"]
