"""What the edge and the SDK share on top of aioquic: a fine clock and coalesced sends.

uvloop's clock has 1 ms resolution, and aioquic takes the loop's clock for RTT samples, pacing
and loss timers; on loopback its pacer then stalls and latency jumps to seconds. aioquic also
builds and sends packets after every datagram received; coalescing those into one transmit per
loop iteration spares most of that work when datagrams arrive in bursts. Most of what
remains per media datagram is aioquic's general packet parsing, which a packet of DATAGRAM
frames alone does not need.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.quic.events import DatagramFrameReceived
from aioquic.quic.recovery import MAX_ACK_RANGES
from aioquic.tls import Epoch

ALPN = "skymesh/1"
MAX_DATAGRAM_FRAME_SIZE = 65536
TRANSMIT_INTERVAL_S = 0.001


class FineClock:
    """The event loop as aioquic sees it: everything the loop has, with a monotonic clock of
    full resolution (the same clock uvloop and asyncio count from, so timers still line up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def time(self) -> float:
        return time.monotonic()

    def __getattr__(self, name: str):
        return getattr(self._loop, name)


class Protocol(QuicConnectionProtocol):
    """A QuicConnectionProtocol on a fine clock that transmits once per loop iteration, and
    takes packets that carry only DATAGRAM frames on a fast path once the handshake is done."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loop = FineClock(self._loop)
        self._catcher: DatagramCatcher | None = None
        self._last_transmit = 0.0

    def datagram_received(self, data: bytes | str, addr) -> None:
        now = time.monotonic()
        quic = self._quic
        catcher = self._catcher
        if catcher is None and quic._handshake_complete:
            catcher = self._catcher = DatagramCatcher(quic)
        taken = None
        if catcher is not None and addr == quic._network_paths[0].addr:
            taken = catcher.receive(data, now)
        if taken is None:
            quic.receive_datagram(data, addr, now=now)
            self._process_events()
        else:
            for datagram in taken:
                self.quic_event_received(DatagramFrameReceived(data=datagram))
        self.transmit_soon()

    def transmit(self) -> None:
        self._last_transmit = time.monotonic()
        if self._catcher is not None:
            self._catcher.touch()
        super().transmit()

    def transmit_soon(self) -> None:
        """Transmit once, however often it is asked: at the end of this loop iteration, or
        TRANSMIT_INTERVAL_S after the last transmit when that was more recent, so that under
        load each transmit carries several datagrams."""
        if self._transmit_task is None:
            wait = self._last_transmit + TRANSMIT_INTERVAL_S - time.monotonic()
            self._transmit_task = (self._loop.call_later(wait, self.transmit) if wait > 0
                                   else self._loop.call_soon(self.transmit))


class DatagramCatcher:
    """The QUIC receiver's fast path: a 1-RTT packet addressed to our current CID that holds
    only DATAGRAM (and PADDING) frames is decrypted with the connection's keys and recorded
    in its ACK state the way aioquic's receive_datagram does it (duplicates, expected and
    largest packet number, spin bit, idle timer, ACK ranges and ACK timer); anything else is
    left to aioquic. Returns the datagrams, or None to fall back."""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        self.space = quic._spaces[Epoch.ONE_RTT]
        self.crypto = quic._cryptos[Epoch.ONE_RTT]
        for name in ("received_packets", "ack_queue", "expected_packet_number",
                     "largest_received_packet", "discarded"):
            getattr(self.space, name)  # fail now (AttributeError) if aioquic changed
        for name in ("_spin_highest_pn", "_ack_delay", "_close_at", "_idle_timeout", "host_cid"):
            getattr(quic, name)
        self.received_at: float | None = None

    def receive(self, data: bytes, now: float) -> list[bytes] | None:
        quic, space = self.quic, self.space
        cid = quic.host_cid
        if not data or data[0] & 0x80 or data[1:1 + len(cid)] != cid:
            return None  # long header or another CID: aioquic's business
        try:
            header, payload, number = self.crypto.decrypt_packet(
                data, 1 + len(cid), space.expected_packet_number)
        except Exception:
            return None  # aioquic will drop it (or deal with a key change) itself
        if number in space.received_packets:
            return []  # duplicate
        if header[0] & 0x18:
            return None  # reserved bits set: aioquic closes the connection
        datagrams = []
        pos, end = 0, len(payload)
        while pos < end:
            kind = payload[pos]
            if kind == 0x00:  # PADDING
                pos += 1
            elif kind == 0x30:  # DATAGRAM to the end of the packet
                datagrams.append(payload[pos + 1:])
                pos = end
            elif kind == 0x31:  # DATAGRAM with a length
                size, pos = _varint(payload, pos + 1)
                datagrams.append(payload[pos:pos + size])
                pos += size
            else:
                return None
        if pos > end:
            return None
        if number > space.expected_packet_number:
            space.expected_packet_number = number + 1
        if number > quic._spin_highest_pn:
            spin = bool(header[0] & 0x20)
            quic._spin_bit = not spin if quic._is_client else spin  # a client inverts it
            quic._spin_highest_pn = number
        self.received_at = now  # the idle timer is pushed back once per batch (`touch`)
        quic._ack_eliciting_sent_since_receipt = False
        if not space.discarded:
            if number > space.largest_received_packet:
                space.largest_received_packet = number
                space.largest_received_time = now
            space.ack_queue.add(number)
            space.received_packets.add(number)
            if len(space.ack_queue) > MAX_ACK_RANGES:
                space.ack_queue.shift()
            if datagrams and space.ack_at is None:
                space.ack_at = now + quic._ack_delay
        return datagrams

    def touch(self) -> None:
        """Push the idle timeout back from the last packet taken, as aioquic would have."""
        if self.received_at is not None:
            self.quic._close_at = self.received_at + self.quic._idle_timeout()
            self.received_at = None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A QUIC variable-length integer at `pos`: (value, position after it)."""
    first = buf[pos]
    size = 1 << (first >> 6)
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | buf[pos + i]
    return value, pos + size
