"""The client edge: an aioquic server (ALPN ``skymesh/1``) where SDK sessions join channels,
publish media (QUIC datagrams) and messages (JSON lines on their stream), and receive what the
other sessions of their channel publish. One edge, local fan-out only (no relay forwarding yet).

Wire protocol on the client's first bidirectional stream, one JSON object per line:

- client -> edge: ``{"type":"join","token":T,"channel":C}`` first, then
  ``{"type":"message","id":N,"body":B}`` (needs ``publish-messages``);
- edge -> client: ``{"type":"joined","uid":U,"channel":C,"region":R,"privileges":[...]}``, then
  ``{"type":"message","from":U,"id":N,"body":B}`` for each message of another publisher.

Refusals close the QUIC connection with the `skymesh.token.ERROR_CODES` number of the
`TokenError` as the application error code and its reason as the reason phrase.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)

from skymesh.token import Grant, TokenError, privilege_list, verify

ALPN = "skymesh/1"
MAX_DATAGRAM_FRAME_SIZE = 65536
MAX_MEDIA_BYTES = 1000  # larger datagrams are dropped (and counted)
MAX_QUEUED_DATAGRAMS = 64  # per session; the oldest are dropped beyond this
MAX_LINE_BYTES = 64 * 1024  # a control/message line longer than this is malformed

COUNTERS = ("joined", "refused", "media_forwarded", "media_dropped", "messages")


class EdgeState:
    """What one edge knows: its region, the zones it may serve, the app secrets, the sessions
    joined to each channel, and its counters."""

    def __init__(self, secrets: Mapping[str, bytes], region: str, zones: set[str],
                 max_media_bytes: int = MAX_MEDIA_BYTES,
                 max_queued_datagrams: int = MAX_QUEUED_DATAGRAMS) -> None:
        self.secrets = secrets
        self.region = region
        self.zones = frozenset(zones)
        self.max_media_bytes = max_media_bytes
        self.max_queued_datagrams = max_queued_datagrams
        self.channels: dict[str, set[EdgeSession]] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.port: int | None = None

    def subscribers(self, channel: str) -> set[EdgeSession]:
        return self.channels.get(channel, set())

    def add(self, session: EdgeSession) -> None:
        assert session.grant is not None
        self.channels.setdefault(session.grant.channel, set()).add(session)

    def remove(self, session: EdgeSession) -> None:
        if session.grant is None:
            return
        members = self.channels.get(session.grant.channel)
        if members is not None:
            members.discard(session)
            if not members:
                del self.channels[session.grant.channel]


class EdgeSession(QuicConnectionProtocol):
    """One client's QUIC connection to the edge."""

    def __init__(self, *args, edge: EdgeState, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.edge = edge
        self.grant: Grant | None = None
        self.stream_id: int | None = None
        self._buffer = b""
        self._closing = False

    # -- events ----------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, ConnectionTerminated):
            self._closing = True
            self.edge.remove(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.remove(self)
        super().connection_lost(exc)

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
        else:
            self._refuse(TokenError("malformed", f"unexpected message type {kind!r}"))

    # -- join ------------------------------------------------------------------------------

    def _join(self, msg: dict) -> None:
        token, channel = msg.get("token"), msg.get("channel")
        if not isinstance(channel, str) or not channel:
            self._refuse(TokenError("malformed", "join needs a channel"))
            return
        try:
            grant = verify(token, self.edge.secrets, channel=channel, need=("join",))
            if grant.zone not in self.edge.zones:
                raise TokenError("wrong-zone", f"the token is for zone {grant.zone!r}; edge "
                                 f"region {self.edge.region!r} serves "
                                 f"{', '.join(sorted(self.edge.zones)) or 'no zone'}")
        except TokenError as e:
            self._refuse(e)
            return
        self.grant = grant
        self.edge.add(self)
        self.edge.counters["joined"] += 1
        self._send_line({"type": "joined", "uid": grant.uid, "channel": grant.channel,
                         "region": self.edge.region,
                         "privileges": privilege_list(grant.privileges)})

    def _refuse(self, error: TokenError) -> None:
        if self._closing:
            return
        self._closing = True
        self.edge.counters["refused"] += 1
        self.edge.remove(self)
        self._quic.close(error_code=error.number, reason_phrase=error.reason)
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
        for other in self.edge.subscribers(self.grant.channel):
            if other is not self:
                other.send_media(data)

    def send_media(self, data: bytes) -> None:
        """Queue one datagram to this session, dropping its oldest queued ones beyond the cap
        (aioquic queues datagrams without bound)."""
        pending = self._quic._datagrams_pending
        while len(pending) >= self.edge.max_queued_datagrams:
            pending.popleft()
            self.edge.counters["media_dropped"] += 1
        self._quic.send_datagram_frame(data)
        self.edge.counters["media_forwarded"] += 1
        self.transmit()

    # -- messages --------------------------------------------------------------------------

    def _on_message(self, msg: dict) -> None:
        if not self._require("publish-messages"):
            return
        mid, body = msg.get("id"), msg.get("body")
        if not isinstance(mid, int) or isinstance(mid, bool) or not isinstance(body, str):
            self._refuse(TokenError("malformed", "a message needs an integer id and a "
                                    "string body"))
            return
        assert self.grant is not None
        self.edge.counters["messages"] += 1
        out = {"type": "message", "from": self.grant.uid, "id": mid, "body": body}
        for other in self.edge.subscribers(self.grant.channel):
            if other is not self:
                other._send_line(out)

    def _send_line(self, obj: dict) -> None:
        if self._closing or self.stream_id is None:
            return
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self._quic.send_stream_data(self.stream_id, data)
        self.transmit()


def server_configuration(cert: Path | str, key: Path | str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE)
    config.load_cert_chain(str(cert), str(key))
    return config


async def start_edge(host: str, port: int, cert: Path | str, key: Path | str,
                     secrets: Mapping[str, bytes], region: str, zones: set[str],
                     **limits: int) -> tuple[QuicServer, EdgeState]:
    """Serve the edge on `host`:`port` (0 picks a free port; see `EdgeState.port`). Close it
    with `server.close()`."""
    edge = EdgeState(secrets, region, zones, **limits)

    def protocol(*args, **kwargs) -> EdgeSession:
        return EdgeSession(*args, edge=edge, **kwargs)

    server = await serve(host, port, configuration=server_configuration(cert, key),
                         create_protocol=protocol)
    edge.port = server._transport.get_extra_info("sockname")[1]
    return server, edge


__all__ = ["ALPN", "EdgeSession", "EdgeState", "start_edge"]
