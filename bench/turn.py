"""A minimal TURN client over UDP (RFC 8489 STUN, RFC 8656 TURN), just enough for the relay
benchmark: Allocate with long-term credentials, CreatePermission, ChannelBind and ChannelData
framing. Blocking sockets, no retransmission beyond a simple retry, IPv4 only.

    client = TurnClient(sock, ("127.0.0.1", 3478), "bench", "secret")
    relayed = client.allocate()
    client.create_permission(peer)
    client.channel_bind(0x4000, peer)
    sock.send(channel_data(0x4000, payload))
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import socket
import struct

MAGIC = 0x2112A442
_HEADER = struct.Struct("!HHI12s")

# methods | classes
BINDING, ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND = 0x001, 0x003, 0x004, 0x008, 0x009
REQUEST, INDICATION, SUCCESS, ERROR = 0x000, 0x010, 0x100, 0x110

# attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

UDP_TRANSPORT = 17


class TurnError(RuntimeError):
    """A TURN request failed: an error response (`code`, `reason`) or no answer (code 0)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}" if code else reason)
        self.code = code
        self.reason = reason


class Message:
    """A STUN message: type (method | class), transaction id and attributes in order."""

    def __init__(self, msg_type: int, transaction: bytes | None = None,
                 attrs: list[tuple[int, bytes]] | None = None) -> None:
        self.type = msg_type
        self.transaction = transaction if transaction is not None else os.urandom(12)
        self.attrs: list[tuple[int, bytes]] = attrs if attrs is not None else []

    @property
    def method(self) -> int:
        return self.type & 0x3EEF

    @property
    def klass(self) -> int:
        return self.type & 0x0110

    def get(self, attr: int) -> bytes | None:
        for kind, value in self.attrs:
            if kind == attr:
                return value
        return None

    def add(self, attr: int, value: bytes) -> Message:
        self.attrs.append((attr, value))
        return self

    def encode(self, key: bytes | None = None, fingerprint: bool = True) -> bytes:
        """The wire form; with `key`, MESSAGE-INTEGRITY (HMAC-SHA1) is appended, then
        FINGERPRINT (CRC-32 xor 0x5354554E) when asked."""
        body = b"".join(_attr(kind, value) for kind, value in self.attrs)
        if key is not None:
            head = _HEADER.pack(self.type, len(body) + 24, MAGIC, self.transaction)
            mac = hmac.new(key, head + body, hashlib.sha1).digest()
            body += _attr(MESSAGE_INTEGRITY, mac)
        if fingerprint:
            head = _HEADER.pack(self.type, len(body) + 8, MAGIC, self.transaction)
            crc = (binascii.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
            body += _attr(FINGERPRINT, struct.pack("!I", crc))
        return _HEADER.pack(self.type, len(body), MAGIC, self.transaction) + body

    @classmethod
    def decode(cls, data: bytes) -> Message:
        """Parse a STUN message; raises ValueError on anything malformed."""
        if len(data) < _HEADER.size:
            raise ValueError("short STUN message")
        msg_type, length, magic, transaction = _HEADER.unpack_from(data)
        if msg_type & 0xC000 or magic != MAGIC or length % 4 or _HEADER.size + length > len(data):
            raise ValueError("not a STUN message")
        attrs: list[tuple[int, bytes]] = []
        pos, end = _HEADER.size, _HEADER.size + length
        while pos < end:
            if pos + 4 > end:
                raise ValueError("truncated attribute header")
            kind, size = struct.unpack_from("!HH", data, pos)
            if pos + 4 + size > end:
                raise ValueError("attribute runs past the message")
            attrs.append((kind, data[pos + 4:pos + 4 + size]))
            pos += 4 + size + (-size % 4)
        return cls(msg_type, transaction, attrs)


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def xor_address(addr: tuple[str, int]) -> bytes:
    """XOR-*-ADDRESS value for an IPv4 address (no transaction id needed, unlike IPv6)."""
    host, port = addr
    raw = socket.inet_aton(host)
    x = struct.unpack("!I", raw)[0] ^ MAGIC
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC >> 16), x)


def parse_xor_address(value: bytes) -> tuple[str, int]:
    family, xport = struct.unpack_from("!xBH", value)
    if family != 1 or len(value) < 8:
        raise ValueError("only IPv4 XOR addresses are supported")
    port = xport ^ (MAGIC >> 16)
    (x,) = struct.unpack_from("!I", value, 4)
    return socket.inet_ntoa(struct.pack("!I", x ^ MAGIC)), port


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" password), the long-term credential key."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def channel_data(channel: int, payload: bytes) -> bytes:
    """A ChannelData message (no padding: over UDP it is optional)."""
    return struct.pack("!HH", channel, len(payload)) + payload


def error_of(msg: Message) -> tuple[int, str]:
    value = msg.get(ERROR_CODE) or b"\0\0\0\0"
    return (value[2] & 0x7) * 100 + value[3], value[4:].decode("utf-8", "replace")


class TurnClient:
    """One allocation on a TURN server over a connected-or-not UDP socket. Requests are
    synchronous; anything else arriving while waiting for a response is ignored."""

    def __init__(self, sock: socket.socket, server: tuple[str, int], username: str,
                 password: str, timeout: float = 1.0, retries: int = 3) -> None:
        self.sock = sock
        self.server = server
        self.username = username
        self.password = password
        self.timeout = timeout
        self.retries = retries
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.key: bytes | None = None
        self.relayed: tuple[str, int] | None = None
        self.mapped: tuple[str, int] | None = None
        self.lifetime: int | None = None

    def _exchange(self, msg: Message, key: bytes | None) -> Message:
        data = msg.encode(key)
        old = self.sock.gettimeout()
        self.sock.settimeout(self.timeout)
        try:
            for _ in range(self.retries):
                self.sock.sendto(data, self.server)
                try:
                    while True:
                        raw, _addr = self.sock.recvfrom(65536)
                        try:
                            reply = Message.decode(raw)
                        except ValueError:
                            continue  # ChannelData or garbage
                        if reply.transaction == msg.transaction:
                            return reply
                except TimeoutError:
                    continue
        finally:
            self.sock.settimeout(old)
        raise TurnError(0, f"no answer from the TURN server at {self.server[0]}:{self.server[1]}")

    def _authenticated(self, method: int, attrs: list[tuple[int, bytes]]) -> Message:
        """Send a request with long-term credentials, learning realm and nonce from a 401 and
        following a 438 (stale nonce) once."""
        for _ in range(3):
            msg = Message(method | REQUEST, attrs=list(attrs))
            key = None
            if self.realm is not None and self.nonce is not None:
                msg.add(USERNAME, self.username.encode())
                msg.add(REALM, self.realm.encode())
                msg.add(NONCE, self.nonce)
                key = self.key
            reply = self._exchange(msg, key)
            if reply.klass == SUCCESS:
                return reply
            code, reason = error_of(reply)
            nonce, realm = reply.get(NONCE), reply.get(REALM)
            if nonce is not None and (code == 438 or (code == 401 and key is None)):
                if realm is not None:
                    self.realm = realm.decode()
                if self.realm is None:
                    raise TurnError(code, f"{reason} (no REALM given)")
                self.nonce = nonce
                self.key = long_term_key(self.username, self.realm, self.password)
                continue
            if code == 401:
                reason += " (wrong user or password?)"
            raise TurnError(code, reason)
        raise TurnError(0, "authentication did not converge")

    def allocate(self, lifetime: int = 600) -> tuple[str, int]:
        """Allocate a UDP relay; returns the relayed transport address."""
        reply = self._authenticated(ALLOCATE, [
            (REQUESTED_TRANSPORT, bytes([UDP_TRANSPORT, 0, 0, 0])),
            (LIFETIME, struct.pack("!I", lifetime)),
        ])
        relayed = reply.get(XOR_RELAYED_ADDRESS)
        if relayed is None:
            raise TurnError(0, "Allocate success without XOR-RELAYED-ADDRESS")
        self.relayed = parse_xor_address(relayed)
        mapped = reply.get(XOR_MAPPED_ADDRESS)
        self.mapped = parse_xor_address(mapped) if mapped else None
        life = reply.get(LIFETIME)
        self.lifetime = struct.unpack("!I", life)[0] if life else None
        return self.relayed

    def create_permission(self, peer: tuple[str, int]) -> None:
        self._authenticated(CREATE_PERMISSION, [(XOR_PEER_ADDRESS, xor_address(peer))])

    def channel_bind(self, channel: int, peer: tuple[str, int]) -> None:
        if not 0x4000 <= channel <= 0x4FFF:
            raise ValueError("channel numbers are 0x4000..0x4FFF")
        self._authenticated(CHANNEL_BIND, [
            (CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
            (XOR_PEER_ADDRESS, xor_address(peer)),
        ])

    def refresh(self, lifetime: int = 0) -> None:
        """Refresh the allocation; lifetime 0 deletes it."""
        self._authenticated(REFRESH, [(LIFETIME, struct.pack("!I", lifetime))])


def binding(sock: socket.socket, server: tuple[str, int], timeout: float = 0.2) -> bool:
    """True if a STUN Binding request to `server` gets a success response (readiness probe)."""
    msg = Message(BINDING | REQUEST)
    old = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        sock.sendto(msg.encode(), server)
        while True:
            raw, _ = sock.recvfrom(65536)
            try:
                reply = Message.decode(raw)
            except ValueError:
                continue
            if reply.transaction == msg.transaction:
                return reply.klass == SUCCESS
    except OSError:
        return False
    finally:
        sock.settimeout(old)
