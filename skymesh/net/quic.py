"""What the edge and the SDK share on top of aioquic: a fine clock, coalesced sends, and fast
paths for packets that carry nothing but DATAGRAM frames.

uvloop's clock has 1 ms resolution, and aioquic takes the loop's clock for RTT samples, pacing
and loss timers; on loopback its pacer then stalls and latency jumps to seconds. aioquic also
builds and sends packets after every datagram received; coalescing those into one transmit per
loop iteration spares most of that work when datagrams arrive in bursts, and the packets of
one transmit leave in one system call (segmentation offload, as relay/udpio.py). Most of what
remained per media datagram was aioquic's general packet parsing and building, which a packet
of DATAGRAM frames alone does not need: `DatagramCatcher` reads such packets and
`DatagramSender` writes them, each keeping aioquic's own state as aioquic would.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import weakref
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer, BufferReadError, size_uint_var
from aioquic.quic.connection import QuicConnectionState
from aioquic.quic.events import DatagramFrameReceived
from aioquic.quic.packet import QuicPacketType, pull_ack_frame, push_ack_frame
from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.quic.recovery import MAX_ACK_RANGES
from aioquic.tls import Epoch

from skymesh.net.udpio import BatchedUDP


class FineClock:
    """The event loop as aioquic sees it: everything the loop has, with a monotonic clock of
    full resolution (the same clock uvloop and asyncio count from, so timers still line up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def time(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback, *args) -> asyncio.TimerHandle:
        return self._loop.call_at(when, callback, *args)  # every transmit: not __getattr__

    def call_soon(self, callback, *args) -> asyncio.Handle:
        return self._loop.call_soon(callback, *args)

    def __getattr__(self, name: str):
        return getattr(self._loop, name)


class Protocol(QuicConnectionProtocol):
    """A QuicConnectionProtocol on a fine clock that transmits once per loop iteration, and
    takes packets that carry only DATAGRAM frames on a fast path once the handshake is done."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loop = FineClock(self._loop)
        self._catcher: DatagramCatcher | None = None
        self._sender: DatagramSender | None = None
        self._acker: AckSender | None = None
        self._streamer: StreamSender | None = None

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
        elif not taken and self._transmit_task is None and not _has_pending(quic):
            # an ACK (or a duplicate): nothing to answer and nothing it let out; only the
            # timers move (loss detection, idle)
            self._rearm()
            return
        else:
            for datagram in taken:
                self.quic_event_received(DatagramFrameReceived(data=datagram))
        self.transmit_soon()

    def _rearm(self) -> None:
        """The timer as QuicConnectionProtocol.transmit re-arms it, without building packets."""
        if self._catcher is not None:
            self._catcher.touch()
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def transmit(self) -> None:
        now = time.monotonic()
        quic = self._quic
        if self._catcher is not None:
            self._catcher.touch()
        if quic._datagrams_pending and quic._handshake_complete:
            if self._sender is None:
                self._sender = DatagramSender(quic)
            addr = quic._network_paths[0].addr
            packets = self._sender.send(now)
            batch = segmented_sender(self._transport) if len(packets) > 1 else None
            if batch is not None:
                batch.send_now(packets, addr)
            else:
                for packet in packets:
                    self._transport.sendto(packet, addr)
        due = _due(quic, now)
        while due == STREAM:  # one stream's data, nothing else: a packet or more of it
            if self._streamer is None:
                self._streamer = StreamSender(quic)
            packet = self._streamer.send(now)
            if packet is None:
                due = MORE
                break
            self._transport.sendto(packet, quic._network_paths[0].addr)
            due = _due(quic, now)
        if due == ACK_ONLY and len(quic._spaces[Epoch.ONE_RTT].ack_queue) == 1:
            if self._acker is None:
                self._acker = AckSender(quic)
            self._transport.sendto(self._acker.send(now), quic._network_paths[0].addr)
            due = NOTHING
        if due == NOTHING:
            # nothing is left for aioquic to write: its packet builder would start a packet
            # and throw it away (a third of an edge's time in a danmaku storm)
            self._transmit_task = None
            self._rearm()
            return
        super().transmit()  # what is left, ACKs and streams; re-arms the timers

    def transmit_soon(self) -> None:
        """Transmit once, however often it is asked, at the end of this loop iteration: what
        arrived in one burst leaves in one transmit. (Waiting up to 1 ms for more, as
        before, doubled the edge's p99 latency on uvloop's 1 ms timers and gained no rate
        once packets left in segmented sends.)"""
        if self._transmit_task is None:
            self._transmit_task = self._loop.call_soon(self.transmit)


class RoutingServer(QuicServer):
    """aioquic's QuicServer, but a 1-RTT packet (short header) for a connection it knows goes
    straight to that connection, found by the connection ID after the first byte, without
    parsing the header first: nearly every packet a busy edge receives is one."""

    def datagram_received(self, data, addr) -> None:
        if data and data[0] & 0xC0 == 0x40:  # short header, fixed bit set
            cid_length = self._configuration.connection_id_length
            protocol = self._protocols.get(data[1:1 + cid_length])
            if protocol is not None and len(data) > cid_length:
                protocol.datagram_received(data, addr)
                return
        super().datagram_received(data, addr)


async def serve(host: str, port: int, *, configuration: Any,
                create_protocol: Any) -> QuicServer:
    """aioquic.asyncio.serve, with a RoutingServer."""
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(
        lambda: RoutingServer(configuration=configuration, create_protocol=create_protocol),
        local_addr=(host, port))
    return server


_SEGMENTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def segmented_sender(transport: asyncio.DatagramTransport) -> BatchedUDP | None:
    """A sender on the transport's own socket (a duplicate of its descriptor, closed with the
    transport) that sends runs of equal-sized packets in one system call each, with
    segmentation offload; None when the transport has no socket or is closing."""
    if transport.is_closing():
        return None
    sender = _SEGMENTED.get(transport)
    if sender is None:
        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        dup = socket.socket(fileno=os.dup(sock.fileno()))
        dup.setblocking(False)
        sender = _SEGMENTED[transport] = BatchedUDP(dup, lambda data, addr: None)
        weakref.finalize(transport, dup.close)
    return sender


NOTHING, ACK_ONLY, STREAM, MORE = "nothing", "ack", "stream", "more"


def _due(quic: Any, now: float) -> str:
    """What aioquic would write now: NOTHING, an ACK alone (ACK_ONLY), or MORE (leave it to
    aioquic). NOTHING and ACK_ONLY need a confirmed connection on a validated path with no
    data to send and none of the control frames aioquic writes on its own (those come due
    on packets it handles itself, or on its timers, and the full transmit those lead to
    writes them)."""
    if (quic._state != QuicConnectionState.CONNECTED or not quic._handshake_confirmed
            or quic._close_pending or quic._probe_pending or quic._ping_pending
            or quic._handshake_done_pending or quic._retire_connection_ids
            or quic._streams_blocked_pending):
        return MORE
    path = quic._network_paths[0]
    if not path.is_validated or path.remote_challenges:
        return MORE
    for c in quic._host_cids:
        if not c.was_sent:
            return MORE
    if quic._datagrams_pending or _limits_due(quic):
        return MORE
    ack_at = quic._spaces[Epoch.ONE_RTT].ack_at
    ack_due = ack_at is not None and ack_at <= now
    writing = None
    for stream in quic._streams.values():
        if not stream.sender.buffer_is_empty or stream.sender.reset_pending \
                or stream.receiver.stop_pending:
            if writing is not None or ack_due or stream.is_blocked \
                    or stream.sender.reset_pending or stream.receiver.stop_pending:
                return MORE  # two streams, an ACK to go with it, or more than data
            writing = stream
    if writing is not None:
        return STREAM
    return ACK_ONLY if ack_due else NOTHING


def _limits_due(quic: Any) -> bool:
    """Whether aioquic would raise or resend a flow-control limit (MAX_DATA, MAX_STREAMS,
    MAX_STREAM_DATA) in its next packet: the conditions of its _write_connection_limits and
    _write_stream_limits."""
    max_data = quic._local_max_data
    if max_data.used * 2 > max_data.value or max_data.value != max_data.sent:
        return True
    for limit in (quic._local_max_streams_bidi, quic._local_max_streams_uni):
        if limit.value != limit.sent and limit.sent - limit.used < limit.value - limit.sent:
            return True
    for stream in quic._streams.values():
        local = stream.max_stream_data_local
        if local and (stream.receiver.highest_offset * 2 > local
                      or stream.max_stream_data_local_sent != local):
            return True
    return False


def _has_pending(quic: Any) -> bool:
    """Whether the connection holds data to send (datagrams, or stream data new or lost)."""
    if quic._datagrams_pending:
        return True
    for stream in quic._streams.values():
        if not stream.sender.buffer_is_empty:
            return True
    return False


class DatagramCatcher:
    """The QUIC receiver's fast path: a 1-RTT packet addressed to our current CID that holds
    only DATAGRAM, ACK and PADDING frames is decrypted with the connection's keys and recorded
    in its ACK state the way aioquic's receive_datagram does it (duplicates, expected and
    largest packet number, spin bit, idle timer, ACK ranges and ACK timer), its ACKs handed to
    loss recovery as aioquic's own handler does; anything else is left to aioquic. Returns the
    datagrams (none for a packet of ACKs), or None to fall back. (A client shown comments ten
    times a second ACKs each datagram: at the edge, most packets that arrive are ACKs.)"""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        self.space = quic._spaces[Epoch.ONE_RTT]
        self.crypto = quic._cryptos[Epoch.ONE_RTT]
        for name in ("received_packets", "ack_queue", "expected_packet_number",
                     "largest_received_packet", "discarded"):
            getattr(self.space, name)  # fail now (AttributeError) if aioquic changed
        for name in ("_spin_highest_pn", "_ack_delay", "_close_at", "_idle_timeout", "host_cid",
                     "_loss", "_remote_ack_delay_exponent", "_streams", "_datagrams_pending",
                     # what _due reads, on every transmit once this exists
                     "_local_max_data", "_local_max_streams_bidi", "_local_max_streams_uni",
                     "_handshake_confirmed", "_probe_pending", "_ping_pending",
                     "_handshake_done_pending", "_retire_connection_ids",
                     "_streams_blocked_pending", "_host_cids", "_close_pending"):
            getattr(quic, name)
        self.received_at: float | None = None
        self.acks = 0  # ACK frames taken
        self.zero_rtt = None if quic._is_client else quic._cryptos[Epoch.ZERO_RTT].recv

    def receive(self, data: bytes, now: float) -> list[bytes] | None:
        quic, space = self.quic, self.space
        cid = quic.host_cid
        if not data or data[0] & 0x80 or data[1:1 + len(cid)] != cid:
            return None  # long header or another CID: aioquic's business
        if self.zero_rtt is not None:
            if self.zero_rtt.is_valid():
                return None  # a server's first 1-RTT packet: aioquic drops the 0-RTT keys
            self.zero_rtt = None
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
        acks = []
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
            elif kind in (0x02, 0x03):  # ACK, ACK with ECN counts
                buf = Buffer(data=payload)
                buf.seek(pos + 1)
                try:
                    ranges, delay = pull_ack_frame(buf)
                    if kind == 0x03:
                        for _ in range(3):
                            buf.pull_uint_var()
                except (ValueError, BufferReadError):
                    return None  # aioquic closes the connection over it
                acks.append((ranges, delay))
                pos = buf.tell()
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
        self.acks += len(acks)
        for ranges, delay in acks:
            quic._loss.peer_completed_address_validation = True
            quic._loss.on_ack_received(
                ack_rangeset=ranges, ack_delay=(delay << quic._remote_ack_delay_exponent) / 1e6,
                now=now, space=space)
        return datagrams

    def touch(self) -> None:
        """Push the idle timeout back from the last packet taken, as aioquic would have."""
        if self.received_at is not None:
            self.quic._close_at = self.received_at + self.quic._idle_timeout()
            self.received_at = None


class DatagramSender:
    """The QUIC sender's fast path: each pending DATAGRAM goes in a 1-RTT packet of its own,
    built with the connection's keys, CID, spin bit and packet numbers, and registered with its
    loss recovery and congestion controller the way aioquic's packet builder does it, so ACKs,
    RTT samples, loss detection and the congestion window work as before. Only the window is
    honoured, not the pacer: media leave in the burst they arrived in. Whatever it does not
    take (a connection closing, a key not ready, no room in the window, a datagram too large
    for one packet) stays queued for aioquic."""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        self.space = quic._spaces[Epoch.ONE_RTT]
        self.crypto = quic._cryptos[Epoch.ONE_RTT]
        self.loss = quic._loss
        for name in ("_datagrams_pending", "_packet_number", "_spin_bit", "_peer_cid",
                     "_max_datagram_size", "_close_pending", "_state",
                     "_ack_eliciting_sent_since_receipt", "_close_at", "_network_paths"):
            getattr(quic, name)  # fail now (AttributeError) if aioquic changed
        for name in ("congestion_window", "bytes_in_flight", "on_packet_sent"):
            getattr(self.loss, name)
        self.sent = 0  # packets

    def send(self, now: float) -> list[bytes]:
        """Take what the window admits off the connection's datagram queue; returns the
        packets, for the caller to send to the connection's current path."""
        quic, crypto, loss = self.quic, self.crypto, self.loss
        pending = quic._datagrams_pending
        if (quic._close_pending or quic._state != QuicConnectionState.CONNECTED
                or not crypto.send.is_valid()):
            return []
        prefix = bytes([0x40 | (quic._spin_bit << 5) | (crypto.key_phase << 2) | 0x01]) \
            + quic._peer_cid.cid
        overhead = len(prefix) + 2 + 16  # packet number, AEAD tag
        window = loss.congestion_window - loss.bytes_in_flight
        packets: list[bytes] = []
        while pending:
            # a DATAGRAM frame to the end of the packet; PADDING ahead of a tiny one leaves
            # enough bytes to sample for header protection
            data = pending[0]
            frames = b"\x00" * max(0, 3 - len(data)) + b"\x30" + data
            size = overhead + len(frames)
            if size > quic._max_datagram_size or size > window:
                break
            pending.popleft()
            number = quic._packet_number
            quic._packet_number = number + 1
            packet = crypto.encrypt_packet(prefix + (number & 0xFFFF).to_bytes(2, "big"),
                                           frames, number)
            loss.on_packet_sent(packet=QuicSentPacket(
                epoch=Epoch.ONE_RTT, in_flight=True, is_ack_eliciting=True,
                is_crypto_packet=False, packet_number=number,
                packet_type=QuicPacketType.ONE_RTT, sent_time=now, sent_bytes=len(packet),
            ), space=self.space)
            window -= len(packet)
            packets.append(packet)
        if packets:
            self.sent += len(packets)
            quic._network_paths[0].bytes_sent += sum(map(len, packets))
            if not quic._ack_eliciting_sent_since_receipt:  # the idle timer, as aioquic does
                quic._close_at = now + quic._idle_timeout()
                quic._ack_eliciting_sent_since_receipt = True
        return packets


class StreamSender:
    """The fast path for a packet holding one STREAM frame and nothing else (a line to a
    session while nothing else is due), built with the connection's keys, CID, spin bit and
    packet numbers, within both flow-control limits and the congestion window, and recorded
    as aioquic's builder records it, with the stream's delivery handler so that loss
    recovery sends what is lost again. The one stream `_due` found writable is taken; None
    when nothing can be written (aioquic then decides)."""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        self.space = quic._spaces[Epoch.ONE_RTT]
        self.crypto = quic._cryptos[Epoch.ONE_RTT]
        for name in ("_remote_max_data", "_remote_max_data_used", "_max_datagram_size",
                     "_packet_number", "_spin_bit", "_peer_cid", "_loss"):
            getattr(quic, name)  # fail now (AttributeError) if aioquic changed
        self.sent = 0

    def send(self, now: float) -> bytes | None:
        quic, crypto, loss = self.quic, self.crypto, self.quic._loss
        stream = next((s for s in quic._streams.values() if not s.sender.buffer_is_empty),
                      None)
        if stream is None or not crypto.send.is_valid():
            return None
        sender = stream.sender
        prefix = bytes([0x40 | (quic._spin_bit << 5) | (crypto.key_phase << 2) | 0x01]) \
            + quic._peer_cid.cid
        room = min(quic._max_datagram_size, loss.congestion_window - loss.bytes_in_flight)
        offset = sender.next_offset
        frame_overhead = 3 + size_uint_var(stream.stream_id) \
            + (size_uint_var(offset) if offset else 0)
        max_size = room - len(prefix) - 2 - 16 - frame_overhead
        if max_size <= 0:
            return None
        before = sender.highest_offset
        frame = sender.get_frame(max_size, min(
            before + quic._remote_max_data - quic._remote_max_data_used,
            stream.max_stream_data_remote))
        if frame is None:
            return None
        quic._remote_max_data_used += sender.highest_offset - before
        buf = Buffer(capacity=frame_overhead + len(frame.data) + 8)
        buf.push_uint_var(0x08 | 0x02 | (0x04 if frame.offset else 0) | (0x01 if frame.fin else 0))
        buf.push_uint_var(stream.stream_id)
        if frame.offset:
            buf.push_uint_var(frame.offset)
        buf.push_uint16(len(frame.data) | 0x4000)
        buf.push_bytes(frame.data)
        number = quic._packet_number
        quic._packet_number = number + 1
        packet = crypto.encrypt_packet(prefix + (number & 0xFFFF).to_bytes(2, "big"),
                                       buf.data, number)
        loss.on_packet_sent(packet=QuicSentPacket(
            epoch=Epoch.ONE_RTT, in_flight=True, is_ack_eliciting=True,
            is_crypto_packet=False, packet_number=number, packet_type=QuicPacketType.ONE_RTT,
            sent_time=now, sent_bytes=len(packet),
            delivery_handlers=[(sender.on_data_delivery, (
                frame.offset, frame.offset + len(frame.data), frame.fin))]), space=self.space)
        quic._network_paths[0].bytes_sent += len(packet)
        if not quic._ack_eliciting_sent_since_receipt:  # the idle timer, as aioquic does
            quic._close_at = now + quic._idle_timeout()
            quic._ack_eliciting_sent_since_receipt = True
        self.sent += 1
        return packet


class AckSender:
    """The fast path for a packet holding one ACK frame and nothing else (what a client
    shown comments sends after each of them), built with the connection's keys, CID, spin
    bit and packet numbers and recorded as aioquic's builder records it. Only for an ACK of
    one range: with more (a loss), aioquic also asks the peer to ACK the ACK, so aioquic
    writes it."""

    def __init__(self, quic: Any) -> None:
        self.quic = quic
        self.space = quic._spaces[Epoch.ONE_RTT]
        self.crypto = quic._cryptos[Epoch.ONE_RTT]
        for name in ("_local_ack_delay_exponent", "_packet_number", "_spin_bit", "_peer_cid",
                     "_loss"):
            getattr(quic, name)  # fail now (AttributeError) if aioquic changed
        self.sent = 0

    def send(self, now: float) -> bytes:
        quic, space, crypto = self.quic, self.space, self.crypto
        delay = int((now - space.largest_received_time) * 1000000) \
            >> quic._local_ack_delay_exponent
        buf = Buffer(capacity=64)
        buf.push_uint_var(0x02)
        push_ack_frame(buf, space.ack_queue, delay, 48)
        space.ack_at = None
        number = quic._packet_number
        quic._packet_number = number + 1
        header = bytes([0x40 | (quic._spin_bit << 5) | (crypto.key_phase << 2) | 0x01]) \
            + quic._peer_cid.cid + (number & 0xFFFF).to_bytes(2, "big")
        packet = crypto.encrypt_packet(header, buf.data, number)
        quic._loss.on_packet_sent(packet=QuicSentPacket(
            epoch=Epoch.ONE_RTT, in_flight=False, is_ack_eliciting=False,
            is_crypto_packet=False, packet_number=number, packet_type=QuicPacketType.ONE_RTT,
            sent_time=now, sent_bytes=len(packet)), space=space)
        quic._network_paths[0].bytes_sent += len(packet)
        self.sent += 1
        return packet


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A QUIC variable-length integer at `pos`: (value, position after it)."""
    first = buf[pos]
    size = 1 << (first >> 6)
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | buf[pos + i]
    return value, pos + size
