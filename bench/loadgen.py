"""Load generators for bench/relay.py: a sender and a receiver process, both pinned to the
generator CPU, that offer a paced packet rate through a relay and count what arrives.

Every packet carries a u64 sequence number whose top 32 bits are the trial id (stale packets
of an earlier trial are not counted) and, where the packet is built per send, the sender's
CLOCK_MONOTONIC time in ns (system-wide, so the receiver computes one-way latency).

- `UdpGenerator`: blocking UDP sockets with 4 MB buffers; the sender batches up to 8 datagrams
  per send with UDP GSO (the kernel splits them; whoever receives sees plain datagrams). Modes:
  - "raw": 1200-byte UDP payload, seq at 0, timestamp at 8 (direct, or any UDP forwarder);
  - "fastpath": a skymesh relay datagram (relay.datagram.encode) of exactly 1200 bytes, seq
    in its header and the timestamp as the first 8 payload bytes; where both sit in what the
    relay forwards is found by encoding and forwarding a probe (`fastpath_offsets`). The
    payload is encrypted, so only latency runs decode what arrives (to read the timestamp);
    max-rate runs read the sequence number in the clear header.
    Max-rate trials send a ring of pre-encoded datagrams, latency runs encode each one;
  - "turn": the sender allocates on a TURN server and sends ChannelData (4-byte header + 1196
    bytes, so 1200 bytes on the wire) to the receiver as its peer; the receiver gets the bare
    1196-byte payload from the relayed address.
- `QuicGenerator`: two aioquic clients speaking the edge's protocol (join line, then QUIC
  datagrams of 8-byte seq + 8-byte timestamp + padding), with fast paths for sending
  (`DatagramBlaster`) and receiving (`DatagramCatcher`) datagram-only 1-RTT packets.

The sender paces in small bursts against the monotonic clock (sleeping ~0.2 ms between them
for UDP, 1 ms for QUIC), so no per-packet timer or coroutine is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import signal
import socket
import ssl
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)
from aioquic.tls import Epoch

from skymesh.edgeproto import ALPN
from skymesh.net.quic import DatagramCatcher

PACKET_SIZE = 1200
QUIC_PAYLOAD = 1100  # QUIC datagram payload; with QUIC's ~30 bytes of overhead ~1130 on the wire
SOCKET_BUFFER = 4 * 1024 * 1024
GEN_CPU = 0
RING = 8192  # pre-encoded fast-path datagrams per max-rate trial
UDP_SEGMENT = 103  # socket option (linux/udp.h)
GSO_SEGMENTS = 8  # datagrams per send with UDP GSO
UDP_PACE_S = 0.0002
QUIC_PACE_S = 0.001
QUIC_SENDER_QUEUE = 512  # datagrams the QUIC sender lets aioquic queue before dropping the oldest
STOP = b"STOP"  # datagram that ends a UDP receiver's trial (shorter than any packet)

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SEQ_TS = struct.Struct("!QQ")
_U64 = struct.Struct("!Q")


# -- process helpers ---------------------------------------------------------------------------

def pin(cpu: int) -> bool:
    """Pin the calling process to `cpu`; False if that CPU does not exist here."""
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except (OSError, ValueError):
        return False


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness cleans up on Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the harness's handler, if it has one
    die_with_parent()
    pin(GEN_CPU)


def receiver_priority(timing: bool) -> bool:
    """During latency runs (`timing`), run the calling receiver thread at real-time priority
    where allowed: it shares a core with the sender, and its arrival times must not wait for
    the sender's time slice (several ms under the default scheduler). At 5,000 packets/s it
    needs little of the core. Max-rate trials run it at normal priority, so that it cannot
    starve the sender."""
    try:
        if timing:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True
    except (OSError, AttributeError):
        return False


def big_buffers(sock: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Ask for `size`-byte send and receive buffers (capped by net.core.[rw]mem_max unless
    root, where the FORCE variants bypass the cap)."""
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)


def _cpu() -> float:
    return time.process_time()


def process_cpu_s(pid: int | None) -> float | None:
    """utime + stime of process `pid` (all its threads), None if unknown."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# -- results -----------------------------------------------------------------------------------

@dataclass
class TrialResult:
    """One trial: `sent` packets offered at `offered_pps` for `duration_s`, `received` of them
    arrived (counted by trial id), with one-way latencies when asked for."""

    offered_pps: float
    duration_s: float
    sent: int = 0
    received: int = 0
    stale: int = 0
    elapsed_s: float = 0.0
    send_errors: int = 0
    gen_dropped: int = 0  # QUIC: datagrams the sender dropped because aioquic could not send
    receiver_slow_packets: int = 0  # QUIC: packets the receiver left to aioquic (no fast path)
    sender_cpu_s: float = 0.0
    receiver_cpu_s: float = 0.0
    relay_cpu_s: float | None = None  # while sending
    others_cpu: float = 0.0  # CPUs' worth used by unrelated processes (set by the harness)
    latencies_ns: array = field(default_factory=lambda: array("q"))

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def sent_pps(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] / 1e6


# -- UDP sender and receiver -------------------------------------------------------------------

def _fastpath_packets(key: bytes) -> tuple[Callable[[int, int], bytes], int]:
    """(encode(seq, ts_ns) -> a 1200-byte signed datagram, payload length)."""
    from relay import datagram as dg

    def make(seq: int, payload: bytes) -> bytes:
        return dg.encode(dg.Datagram(kind=dg.MEDIA, zone="global", channel="bench",
                                     destinations=("rcv",), hop_limit=8, seq=seq,
                                     publisher="snd", payload=payload), key)

    size = PACKET_SIZE - len(make(0, b""))
    pad = bytes(size - 8)

    def encode(seq: int, ts: int) -> bytes:
        return make(seq, _U64.pack(ts) + pad)

    return encode, size


def fastpath_offsets(key: bytes) -> tuple[int, int] | None:
    """(seq offset, timestamp offset) in a bench datagram as the relay forwards it, found by
    encoding, decoding and forwarding a probe with relay/datagram.py (so a change of its layout
    needs no change here); the timestamp's offset is -1 when it does not appear verbatim (an
    encrypted payload: the receiver decodes to read it); None if the sequence number does not
    either (the receiver decodes everything)."""
    from relay import datagram as dg

    encode, _ = _fastpath_packets(key)
    seq, ts = 0x5E0_0000_0000_0D1, 0x7157_A3B0_C1D2_E3F4
    probe = dg.decode(encode(seq, ts), key)
    _, copies, _ = dg.forward(probe, {"rcv": "rcv"}, "rly")
    out = dg.encode(copies["rcv"], key)
    seq_off, ts_off = out.find(seq.to_bytes(8, "big")), out.find(ts.to_bytes(8, "big"))
    return (seq_off, ts_off) if seq_off >= 0 else None


def enable_gso(sock: socket.socket, size: int = PACKET_SIZE) -> int:
    """Turn on UDP generic segmentation offload: one send of k*size bytes leaves as k
    datagrams of `size` bytes (the kernel splits them; receivers see ordinary datagrams).
    Returns how many segments to batch per send (1 when unsupported)."""
    try:
        sock.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, size)
    except OSError:
        return 1
    return GSO_SEGMENTS


def _batch_maker(mode: str, encode: Callable[[int, int], bytes] | None, base: int,
                 total: int, want_ts: bool, segments: int
                 ) -> Callable[[int, int], bytes | memoryview]:
    """batch(i, k): packets i..i+k-1 of a trial back to back (k <= segments); `base` holds
    the trial id."""
    if mode == "fastpath":
        assert encode is not None
        if want_ts:  # latency runs sign each packet, stamped just before encoding
            def signed(i: int, k: int) -> bytes:
                return b"".join(encode(base | j, time.monotonic_ns()) for j in range(i, i + k))
            return signed
        ring = [encode(base | i, 0) for i in range(min(RING, total))]
        size = len(ring)

        def from_ring(i: int, k: int) -> bytes:
            start = i % size
            if start + k <= size:
                return b"".join(ring[start:start + k])
            return b"".join(ring[(i + j) % size] for j in range(k))
        return from_ring
    header = struct.pack("!HH", 0x4000, PACKET_SIZE - 4) if mode == "turn" else b""
    buf = bytearray((header + bytes(PACKET_SIZE - len(header))) * segments)
    view = memoryview(buf)
    offsets = [j * PACKET_SIZE + len(header) for j in range(segments)]
    pack_into, now_ns = _SEQ_TS.pack_into, time.monotonic_ns

    def stamped(i: int, k: int) -> memoryview:
        now = now_ns()
        for j in range(k):
            pack_into(buf, offsets[j], base | (i + j), now)
        return view[:k * PACKET_SIZE]
    return stamped


def _udp_sender(conn: Connection, mode: str, target: tuple[str, int],
                receiver: tuple[str, int], options: dict[str, Any]) -> None:
    _child_setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.bind(("127.0.0.1", 0))
    encode = None
    if mode == "turn":
        from bench.turn import TurnClient, TurnError

        client = TurnClient(sock, target, options["user"], options["password"])
        try:
            relayed = client.allocate()
            client.create_permission(receiver)
            client.channel_bind(0x4000, receiver)
        except (TurnError, OSError) as e:
            conn.send(("error", f"TURN setup failed: {e}"))
            return
        info: dict[str, Any] = {"relayed": list(relayed)}
    else:
        info = {}
        if mode == "fastpath":
            encode, _ = _fastpath_packets(bytes.fromhex(options["key_hex"]))
    sock.connect(target)
    segments = enable_gso(sock) if options.get("gso", True) else 1
    conn.send(("ready", {**info, "gso_segments": segments}))
    send = sock.send
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        if cmd[0] != "run":
            return
        _, trial, rate, duration, want_ts, watch = cmd
        total = max(1, int(rate * duration))
        batch = _batch_maker(mode, encode, trial << 32, total, want_ts, segments)
        watched = process_cpu_s(watch)
        cpu0 = _cpu()
        sent = errors = 0
        monotonic, sleep = time.monotonic, time.sleep
        t0 = monotonic()
        while sent < total:
            due = min(total, int((monotonic() - t0) * rate) + 1)
            while sent < due:
                k = min(segments, due - sent)
                try:
                    send(batch(sent, k))
                except OSError:
                    errors += k
                sent += k
            if sent < total:
                sleep(UDP_PACE_S)
        elapsed = monotonic() - t0
        conn.send({"sent": sent, "elapsed_s": elapsed, "send_errors": errors,
                   "sender_cpu_s": _cpu() - cpu0,
                   "relay_cpu_s": _delta(watched, process_cpu_s(watch))})


def _udp_receiver(conn: Connection, seq_off: int, ts_off: int, key: bytes | None) -> None:
    """Counts a trial's packets by the trial id in their sequence numbers (read at `seq_off`,
    the send time at `ts_off`); with `key`, fast-path datagrams are decoded instead: all of
    them when `seq_off` is negative, else those of latency runs (`ts_off` negative: the send
    time is in the encrypted payload)."""
    _child_setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.bind(("127.0.0.1", 0))
    conn.send(("ready", {"addr": list(sock.getsockname()),
                         "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}))
    buf = bytearray(65536)
    unpack_seq = struct.Struct(f"!{max(seq_off, 0)}xQ").unpack_from
    unpack_ts = struct.Struct(f"!{max(ts_off, 0)}xQ").unpack_from
    min_len = max(seq_off, ts_off, 0) + 8
    recv_into, now_ns = sock.recv_into, time.monotonic_ns
    if key is not None:  # slow path: verify and parse every datagram
        from relay import datagram as dg

        def seq_ts(n: int) -> tuple[int, int]:
            try:
                d = dg.decode(bytes(buf[:n]), key)
            except dg.BadDatagram:
                return -1, 0
            return d.seq, _U64.unpack_from(d.payload)[0]
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        if cmd[0] != "start":
            return
        _, trial, want_ts = cmd
        receiver_priority(want_ts)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                recv_into(buf)
        sock.setblocking(True)
        conn.send("started")
        cpu0 = _cpu()
        got = stale = 0
        lat = array("q")
        while True:
            n = recv_into(buf)
            if n < min_len:
                if buf[:n] == STOP:
                    break
                stale += 1
                continue
            if key is not None and (want_ts or seq_off < 0):
                now = now_ns()
                seq, ts = seq_ts(n)
                if seq >= 0 and seq >> 32 == trial:
                    got += 1
                    if want_ts:
                        lat.append(now - ts)
                else:
                    stale += 1
            elif want_ts:
                now = now_ns()
                seq, ts = unpack_seq(buf)[0], unpack_ts(buf)[0]
                if seq >> 32 == trial:
                    got += 1
                    lat.append(now - ts)
                else:
                    stale += 1
            elif unpack_seq(buf)[0] >> 32 == trial:
                got += 1
            else:
                stale += 1
        conn.send({"received": got, "stale": stale, "receiver_cpu_s": _cpu() - cpu0,
                   "latencies": lat.tobytes()})


# -- QUIC clients ------------------------------------------------------------------------------

def new_event_loop(fine_clock: bool = True, use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """An event loop for aioquic: uvloop when installed. uvloop's `time()` is libuv's cached
    millisecond clock, which stalls aioquic's pacer and loss timers on loopback (sub-ms RTTs);
    with `fine_clock` a subclass answers `time()` from CLOCK_MONOTONIC, the same clock libuv
    reads, so the timers uvloop arms (still with 1 ms granularity) stay consistent."""
    try:
        if not use_uvloop:
            raise ImportError
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()  # asyncio's loop.time() is time.monotonic() already
    if not fine_clock:
        return uvloop.new_event_loop()

    class FineClockLoop(uvloop.Loop):  # type: ignore[misc, name-defined]
        def time(self) -> float:
            return time.monotonic()

    return FineClockLoop()


class DatagramBlaster:
    """The QUIC sender's fast path: DATAGRAM frames sent as 1-RTT packets built directly with
    the connection's own keys, CID, spin bit and packet numbers (taken from aioquic's counter,
    so the numbering stays one sequence), and sent with UDP GSO from the connection's socket.
    aioquic still runs the connection (handshake, ACKs, timers) but does not track these
    packets: no congestion control or pacing on the generator side, as with the UDP senders;
    the relay's own QUIC stack is what is measured. Falls back to one send per packet."""

    def __init__(self, protocol: QuicConnectionProtocol) -> None:
        self.quic = protocol._quic
        self.crypto = self.quic._cryptos[Epoch.ONE_RTT]
        transport = protocol._transport
        assert transport is not None
        pseudo = transport.get_extra_info("socket")
        self.sock = socket.socket(pseudo.family, socket.SOCK_DGRAM, fileno=os.dup(pseudo.fileno()))
        self.addr = self.quic._network_paths[0].addr
        self.gso = True

    def send(self, payloads: list[bytes]) -> None:
        quic, crypto = self.quic, self.crypto
        first = bytes([0x40 | (quic._spin_bit << 5) | (crypto.send.key_phase << 2) | 0x01])
        prefix = first + quic._peer_cid.cid
        packets = []
        for payload in payloads:
            number = quic._packet_number
            quic._packet_number = number + 1
            header = prefix + (number & 0xFFFF).to_bytes(2, "big")
            packets.append(crypto.encrypt_packet(header, b"\x30" + payload, number))
        size = len(packets[0]) if packets else 0
        for i in range(0, len(packets), GSO_SEGMENTS if self.gso else 1):
            chunk = packets[i:i + GSO_SEGMENTS] if self.gso else packets[i:i + 1]
            try:
                if len(chunk) > 1 and all(len(p) == size for p in chunk):
                    self.sock.sendmsg([b"".join(chunk)], [(socket.IPPROTO_UDP, UDP_SEGMENT,
                                                           struct.pack("=H", size))],
                                      0, self.addr)
                else:
                    for packet in chunk:
                        self.sock.sendto(packet, self.addr)
            except OSError:
                if self.gso and len(chunk) > 1:
                    self.gso = False  # no GSO here: one packet per send from now on
                    for packet in chunk:
                        with contextlib.suppress(OSError):
                            self.sock.sendto(packet, self.addr)

    def close(self) -> None:
        self.sock.close()


class BenchClient(QuicConnectionProtocol):
    """A bench client of the edge protocol: join, then send (sender) or count (receiver)
    QUIC datagrams. Received datagrams are handed to aioquic as they arrive, but events and
    transmission (ACKs) run once per event-loop iteration instead of once per datagram."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.joined: asyncio.Future[dict] = self._loop.create_future()
        self.buffer = b""
        self.trial = -1
        self.want_ts = False
        self.got = self.stale = 0
        self.lat = array("q")
        self._flush_scheduled = False
        self.catcher: DatagramCatcher | None = None  # set once joined, by the receiver
        self.slow_packets = 0  # packets aioquic handled (all of them without the catcher)
        self.media_offset = 0  # 1 behind the skymesh edge: its datagrams start with a kind byte

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        now = self._loop.time()
        caught = self.catcher.receive(data, now) if self.catcher is not None else None  # type: ignore[arg-type]
        if caught is None:
            self.slow_packets += 1
            self._quic.receive_datagram(data, addr, now=now)  # type: ignore[arg-type]
        else:
            for datagram in caught:
                self.on_datagram(datagram)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.catcher is not None:
            self.catcher.touch()
        self._process_events()
        self.transmit()

    def on_datagram(self, data: bytes) -> None:
        seq, ts = _SEQ_TS.unpack_from(data, self.media_offset)
        if seq >> 32 == self.trial:
            self.got += 1
            if self.want_ts:
                self.lat.append(time.monotonic_ns() - ts)
        else:
            self.stale += 1

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            self.on_datagram(event.data)
        elif isinstance(event, StreamDataReceived):
            self.buffer += event.data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("type") == "joined" and not self.joined.done():
                    self.joined.set_result(msg)
        elif isinstance(event, ConnectionTerminated) and not self.joined.done():
            self.joined.set_exception(ConnectionError(
                f"closed by the relay: {event.error_code:#x} {event.reason_phrase}"))

    async def join(self, token: str, channel: str = "bench") -> dict:
        stream = self._quic.get_next_available_stream_id()
        line = json.dumps({"type": "join", "token": token, "channel": channel}) + "\n"
        self._quic.send_stream_data(stream, line.encode())
        self.transmit()
        return await asyncio.wait_for(self.joined, 10)

    async def send_trial(self, trial: int, rate: float, duration: float, watch: int | None,
                         fast: bool) -> dict:
        """Offer `rate` datagrams/s for `duration` s in bursts every QUIC_PACE_S."""
        quic = self._quic
        pending = quic._datagrams_pending
        blaster = DatagramBlaster(self) if fast else None
        base = trial << 32
        total = max(1, int(rate * duration))
        buf = bytearray(QUIC_PAYLOAD)
        pack_into, now_ns, monotonic = _SEQ_TS.pack_into, time.monotonic_ns, time.monotonic
        watched = process_cpu_s(watch)
        cpu0 = _cpu()
        sent = dropped = 0
        t0 = monotonic()
        try:
            while sent < total:
                due = min(total, int((monotonic() - t0) * rate) + 1)
                burst = []
                while sent < due:
                    pack_into(buf, 0, base | sent, now_ns())
                    burst.append(bytes(buf))
                    sent += 1
                if blaster is not None:
                    blaster.send(burst)
                else:
                    for payload in burst:
                        quic.send_datagram_frame(payload)
                    while len(pending) > QUIC_SENDER_QUEUE:
                        pending.popleft()
                        dropped += 1
                    self.transmit()
                if sent < total:
                    await asyncio.sleep(QUIC_PACE_S)
        finally:
            if blaster is not None:
                blaster.close()
        elapsed = monotonic() - t0
        return {"sent": sent, "elapsed_s": elapsed, "gen_dropped": dropped,
                "sender_cpu_s": _cpu() - cpu0,
                "relay_cpu_s": _delta(watched, process_cpu_s(watch))}


def _quic_main(conn: Connection, role: str, host: str, port: int, cafile: str, token: str,
               options: dict[str, Any]) -> None:
    _child_setup()
    loop = new_event_loop(options.get("fine_clock", True), options.get("uvloop", True))
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_quic_client(conn, role, host, port, cafile, token,
                                             options))
    except Exception as e:  # reported to the harness, which prints it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        loop.close()


async def _quic_client(conn: Connection, role: str, host: str, port: int, cafile: str,
                       token: str, options: dict[str, Any]) -> None:
    fast_path = options.get("fast_path", True)
    loop = asyncio.get_running_loop()
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                               max_datagram_frame_size=65536, server_name="localhost")
    config.load_verify_locations(cafile=cafile)
    config.verify_mode = ssl.CERT_REQUIRED
    async with connect(host, port, configuration=config, create_protocol=BenchClient) as client:
        assert isinstance(client, BenchClient)
        if client._transport is not None:
            pseudo = client._transport.get_extra_info("socket")
            with socket.socket(pseudo.family, socket.SOCK_DGRAM,
                               fileno=os.dup(pseudo.fileno())) as sock:
                big_buffers(sock)
        client.media_offset = options.get("media_offset", 0)
        joined = await client.join(token)
        if fast_path and role == "receiver":
            try:
                client.catcher = DatagramCatcher(client._quic)
            except (AttributeError, KeyError) as e:
                joined["fast_path_unavailable"] = f"{type(e).__name__}: {e}"
        conn.send(("ready", joined))
        while True:
            try:
                cmd = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                return
            if cmd[0] == "run" and role == "sender":
                _, trial, rate, duration, _want_ts, watch = cmd
                conn.send(await client.send_trial(trial, rate, duration, watch, fast_path))
            elif cmd[0] == "start" and role == "receiver":
                _, client.trial, client.want_ts = cmd
                receiver_priority(client.want_ts)
                client.got = client.stale = client.slow_packets = 0
                client.lat = array("q")
                cpu0 = _cpu()
                conn.send("started")
                await loop.run_in_executor(None, conn.recv)  # "stop"
                conn.send({"received": client.got, "stale": client.stale,
                           "receiver_cpu_s": _cpu() - cpu0,
                           "receiver_slow_packets": client.slow_packets,
                           "latencies": client.lat.tobytes()})
                client.trial = -1
            else:
                return


# -- generators (harness side) -----------------------------------------------------------------

class GeneratorError(RuntimeError):
    pass


def _expect_ready(conn: Connection, what: str, timeout: float) -> dict:
    if not conn.poll(timeout):
        raise GeneratorError(f"{what} did not start within {timeout:.0f} s")
    try:
        msg = conn.recv()
    except EOFError:
        raise GeneratorError(f"{what} exited during setup") from None
    if msg[0] != "ready":
        raise GeneratorError(f"{what}: {msg[1]}")
    return msg[1]


class _Generator:
    """A sender and a receiver process and the pipes to them."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("fork")
        self._procs: list[mp.process.BaseProcess] = []
        self._tx: Connection | None = None
        self._rx: Connection | None = None
        self.watch_pid: int | None = None  # the relay: its CPU use is sampled while sending

    def _spawn(self, target: Callable[..., None], *args: Any) -> Connection:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=target, args=(child, *args), daemon=True)
        proc.start()
        child.close()
        self._procs.append(proc)
        return parent

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def _stop_receiver(self) -> None:
        raise NotImplementedError

    def trial(self, trial: int, rate: float, duration: float, latency: bool = False,
              grace: float = 0.3) -> TrialResult:
        """Offer `rate` packets/s for `duration` s; count what arrives within `grace` s after
        the last send."""
        assert self._tx is not None and self._rx is not None
        self._rx.send(("start", trial, latency))
        if not self._rx.poll(10) or self._rx.recv() != "started":
            raise GeneratorError("the receiver did not start a trial")
        self._tx.send(("run", trial, rate, duration, latency, self.watch_pid))
        if not self._tx.poll(duration * 3 + 30):
            raise GeneratorError("the sender did not finish its trial")
        sent = self._tx.recv()
        if not isinstance(sent, dict):
            raise GeneratorError(f"sender: {sent[1] if isinstance(sent, tuple) else sent}")
        time.sleep(grace)
        self._stop_receiver()
        got = self._rx.recv()
        if not isinstance(got, dict):
            raise GeneratorError(f"receiver: {got[1] if isinstance(got, tuple) else got}")
        lat = array("q")
        lat.frombytes(got.pop("latencies"))
        return TrialResult(offered_pps=rate, duration_s=duration, latencies_ns=lat,
                           **sent, **got)

    def close(self) -> None:
        for conn in (self._tx, self._rx):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.send(("quit",))
                conn.close()
        deadline = time.monotonic() + 1
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs.clear()


class UdpGenerator(_Generator):
    """UDP sender and receiver. Create it (starts the receiver; see `receiver_addr`), start
    the relay pointing at the receiver, then `connect(relay_addr)`."""

    def __init__(self, mode: str, key_hex: str | None = None, user: str = "bench",
                 password: str = "bench") -> None:
        super().__init__()
        if mode not in ("raw", "fastpath", "turn"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.options = {"key_hex": key_hex, "user": user, "password": password}
        offsets, decode_key = (0, 8), None
        if mode == "fastpath":
            assert key_hex is not None
            found = fastpath_offsets(bytes.fromhex(key_hex))
            offsets = found or (-1, -1)
            decode_key = None if found and found[1] >= 0 else bytes.fromhex(key_hex)
        self._rx = self._spawn(_udp_receiver, *offsets, decode_key)
        info = _expect_ready(self._rx, "the UDP receiver", 10)
        self.receiver_addr: tuple[str, int] = tuple(info["addr"])  # type: ignore[assignment]
        self.receiver_rcvbuf: int = info["rcvbuf"]
        self.relayed: tuple[str, int] | None = None
        self._stopper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def connect(self, target: tuple[str, int]) -> None:
        self._tx = self._spawn(_udp_sender, self.mode, target, self.receiver_addr, self.options)
        info = _expect_ready(self._tx, "the UDP sender", 20)
        if "relayed" in info:
            self.relayed = tuple(info["relayed"])  # type: ignore[assignment]

    def _stop_receiver(self) -> None:
        assert self._rx is not None
        for _ in range(100):  # a STOP can be dropped when the receiver's buffer is full
            self._stopper.sendto(STOP, self.receiver_addr)
            if self._rx.poll(0.05):
                return
        raise GeneratorError("the UDP receiver does not stop")

    def close(self) -> None:
        super().close()
        self._stopper.close()


class QuicGenerator(_Generator):
    """Two aioquic clients (receiver, then sender) joined to channel "bench" of a relay."""

    def __init__(self, addr: tuple[str, int], cafile: Path | str, sender_token: str,
                 receiver_token: str, fine_clock: bool = True, use_uvloop: bool = True,
                 fast_path: bool = True, media_offset: int = 0) -> None:
        super().__init__()
        host, port = addr
        options = {"fine_clock": fine_clock, "uvloop": use_uvloop, "fast_path": fast_path,
                   "media_offset": media_offset}
        self._rx = self._spawn(_quic_main, "receiver", host, port, str(cafile),
                               receiver_token, options)
        self.receiver_joined = _expect_ready(self._rx, "the QUIC receiver", 20)
        self._tx = self._spawn(_quic_main, "sender", host, port, str(cafile), sender_token,
                               options)
        self.sender_joined = _expect_ready(self._tx, "the QUIC sender", 20)

    def _stop_receiver(self) -> None:
        assert self._rx is not None
        self._rx.send(("stop",))
        if not self._rx.poll(10):
            raise GeneratorError("the QUIC receiver does not stop")


__all__ = ["GeneratorError", "QuicGenerator", "TrialResult", "UdpGenerator", "new_event_loop",
           "pin"]
