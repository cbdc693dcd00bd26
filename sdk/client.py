"""The skymesh client SDK: a QUIC session to an edge relay.

    async with connect("edge.example", 4433, token, "room", ca_file="ca.pem") as s:
        await s.join()
        s.publish_media(b"frame")
        await s.send_message("hello")
        async for frame in s.media():
            ...
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aioquic.asyncio import connect as quic_connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)

from sdk.errors import (
    ConnectionClosed,
    RateLimited,
    RegionDrained,
    SkymeshError,
    TokenRefused,
)
from skymesh import edgeproto
from skymesh.edgeproto import ALPN, MAX_DATAGRAM_FRAME_SIZE, MAX_MEDIA_PAYLOAD
from skymesh.edgeproto import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # the SDK's API too
from skymesh.net import quic

MAX_RECEIVED_MEDIA = 256  # received datagrams kept for `media()`; the oldest are dropped


@dataclass(frozen=True)
class Message:
    sender: str
    id: int
    body: str


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
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.media: deque[bytes] = deque(maxlen=MAX_RECEIVED_MEDIA)
        self.media_dropped = 0  # received but not taken before MAX_RECEIVED_MEDIA newer ones
        self.messages: deque[Message] = deque()
        self.joined: dict | None = None
        self.renewed: dict | None = None
        self.expiring_at: int | None = None  # set when the edge warns the token runs out
        self.error: SkymeshError | None = None
        self.terminated = False
        self.changed = asyncio.Event()
        self._lines = edgeproto.LineDecoder(max_line_bytes=None)  # the edge is trusted

    def _notify(self) -> None:
        self.changed.set()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            if len(self.media) == self.media.maxlen:
                self.media_dropped += 1
            self.media.append(event.data)
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
        elif kind == edgeproto.MESSAGE:
            self.messages.append(Message(str(msg.get("from")), int(msg.get("id", 0)),
                                         str(msg.get("body"))))
        self._notify()

    async def wait_change(self) -> None:
        await self.changed.wait()
        self.changed.clear()


class Session:
    """One client session on an edge. Make it with `connect`."""

    def __init__(self, protocol: _Protocol, token: str, channel: str) -> None:
        self._p = protocol
        self.token = token
        self.channel = channel
        self.stream_id = protocol._quic.get_next_available_stream_id()
        self._next_id = 1
        self.joined: dict | None = None

    def _check_open(self) -> None:
        if self._p.terminated:
            raise self._p.error or ConnectionClosed()

    def _send(self, obj: dict) -> None:
        self._check_open()
        self._p._quic.send_stream_data(self.stream_id, edgeproto.encode_line(obj))
        self._p.transmit()

    @property
    def token_expiring_at(self) -> int | None:
        """The token's expiry (Unix time) once the edge has warned that it runs out soon;
        renew before then or the edge closes the session (TokenRefused "expired")."""
        return self._p.expiring_at

    async def renew(self, token: str) -> dict:
        """Hand the edge a fresh token for the same app, channel, user and zone; returns the
        edge's "renewed" reply. A refused token closes the session (TokenRefused)."""
        self._p.renewed = None
        self._send(edgeproto.renew(token))
        while self._p.renewed is None:
            self._check_open()
            await self._p.wait_change()
        self.token = token
        return self._p.renewed

    async def join(self) -> dict:
        """Join the channel: the edge's "joined" reply, or TokenRefused/ConnectionClosed."""
        self._send(edgeproto.join(self.token, self.channel))
        while self._p.joined is None:
            self._check_open()
            await self._p.wait_change()
        self.joined = self._p.joined
        return self.joined

    def publish_media(self, data: bytes) -> None:
        """Send one media datagram (unreliable, at most MAX_MEDIA_PAYLOAD bytes)."""
        self._check_open()
        if len(data) > MAX_MEDIA_PAYLOAD:
            raise ValueError(f"a media datagram is at most {MAX_MEDIA_PAYLOAD} bytes, "
                             f"got {len(data)}")
        self._p._quic.send_datagram_frame(bytes(data))
        self._p.transmit()

    async def send_message(self, body: str) -> int:
        """Send a reliable, ordered message to the channel; returns its id. A body longer than
        MAX_MESSAGE_BYTES of UTF-8 raises ValueError (edgeproto.ProtocolError) unsent."""
        edgeproto.check_body(body)
        mid = self._next_id
        self._send(edgeproto.publish(mid, body))
        self._next_id += 1
        return mid

    async def media(self) -> AsyncIterator[bytes]:
        """Received media datagrams; ends when the session closes normally, raises the
        close's error otherwise."""
        while True:
            while self._p.media:
                yield self._p.media.popleft()
            if self._p.terminated:
                if self._p.error:
                    raise self._p.error
                return
            await self._p.wait_change()

    async def messages(self) -> AsyncIterator[Message]:
        """Received channel messages of other publishers, in order, once each."""
        while True:
            while self._p.messages:
                yield self._p.messages.popleft()
            if self._p.terminated:
                if self._p.error:
                    raise self._p.error
                return
            await self._p.wait_change()

    async def wait_closed(self) -> None:
        """Wait until the connection closes; raises its error, if any."""
        while not self._p.terminated:
            await self._p.wait_change()
        if self._p.error:
            raise self._p.error

    def close(self) -> None:
        self._p.close()


@asynccontextmanager
async def connect(host: str, port: int, token: str, channel: str, ca_file: Path | str,
                  server_name: str = "localhost") -> AsyncIterator[Session]:
    """A session to the edge at `host`:`port`, verified against the CA in `ca_file`."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
                               server_name=server_name)
    config.load_verify_locations(cafile=str(ca_file))
    try:
        async with quic_connect(host, port, configuration=config,
                                create_protocol=_Protocol) as protocol:
            assert isinstance(protocol, _Protocol)
            yield Session(protocol, token, channel)
    except ConnectionError as e:
        raise ConnectionClosed(0, f"cannot connect to {host}:{port}: {e}") from e
