"""The relay's UDP socket with batched system calls, a thin shell for the fast path.

Per datagram, a sendto() on loopback costs about as much as all of the relay's own work on
it, so the socket batches both ways, as wireguard-go and quic-go do: it reads until the socket
is empty each time it becomes readable, accepting generic receive offload (UDP_GRO: the
kernel hands over runs of equal-sized datagrams from one sender in one read), and it sends what
one read produced per destination in one call with segmentation offload (UDP_SEGMENT: the
kernel cuts one buffer into equal-sized datagrams). Where the kernel offers neither, it
falls back to one datagram per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import Callable

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
MAX_READ = 65535
MAX_GSO_BYTES = 65000  # a send with segmentation offload carries at most 64 KiB
MAX_GSO_SEGMENTS = 64
READS_PER_WAKEUP = 64  # then let the loop run other work
SOCKET_BUFFER = 4 * 1024 * 1024
_GRO_SPACE = socket.CMSG_SPACE(4)
_NO_GSO = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EIO)
Buffer = bytes | bytearray | memoryview


class BatchedUDP:
    def __init__(self, sock: socket.socket,
                 on_datagram: Callable[[bytes, tuple[str, int]], None],
                 on_error: Callable[[OSError], None] = lambda e: None) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_error = on_error
        self.pending: dict[tuple[str, int], list[Buffer]] = {}
        self.flush_scheduled = False
        self.gso = True
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.blocked: frozenset[tuple[str, int]] = frozenset()  # drills: drop to and from
        # a first look at each read, as (buffer, segment size): the offsets of the datagrams
        # it left for on_datagram (the relay's transit)
        self.take: Callable[[bytes, int], list[int]] | None = None

    @classmethod
    async def bind(cls, addr: tuple[str, int],
                   on_datagram: Callable[[bytes, tuple[str, int]], None],
                   on_error: Callable[[OSError], None] = lambda e: None) -> BatchedUDP:
        sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(addr)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                # bursts overflow the default 208 KB (the kernel caps it at [rw]mem_max)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            sock.close()
            raise
        udp = cls(sock, on_datagram, on_error)
        udp.loop = asyncio.get_running_loop()
        udp.loop.add_reader(sock, udp._readable)
        return udp

    def sockname(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.loop is not None:
                self.loop.remove_reader(self.sock)
            self.sock.close()

    # -- receiving -------------------------------------------------------------------------

    def _readable(self) -> None:
        self.flush_scheduled = True  # what the reads queue leaves below, not in another turn
        try:
            self._read_all()
        finally:
            self.flush()

    def _read_all(self) -> None:
        """Reads until the socket is empty, then hands over what it read in order. Reads of
        one sender that line up (the same datagram size, each but the last made only of whole
        datagrams) go to `take` joined, as one run, so that a busy relay forwards what piled
        up in one send."""
        recvmsg, take = self.sock.recvmsg, self.take
        runs: list[tuple[tuple[str, int], int, list[bytes]]] = []  # (sender, size, reads)
        joinable = 0  # bytes in the last run, 0 if nothing may join it
        for _ in range(READS_PER_WAKEUP):
            try:
                data, ancillary, _, addr = recvmsg(MAX_READ, _GRO_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # an ICMP error from an earlier send, say
                self.on_error(e)
                continue
            if self.blocked and addr in self.blocked:
                continue
            segment = len(data)
            for level, kind, value in ancillary:
                if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    gro = struct.unpack("=i", value[:4])[0]
                    if 0 < gro < segment:
                        segment = gro
            if (joinable and runs[-1][0] == addr and runs[-1][1] == segment
                    and joinable + len(data) <= MAX_GSO_BYTES):
                runs[-1][2].append(data)
                joinable += len(data)
            else:
                runs.append((addr, segment, [data]))
                joinable = len(data) if take is not None else 0
            if segment and len(data) % segment:  # a shorter datagram ends the run
                joinable = 0
        for addr, segment, reads in runs:
            self._deliver(reads[0] if len(reads) == 1 else b"".join(reads), segment, addr)

    def _deliver(self, data: bytes, segment: int, addr: tuple[str, int]) -> None:
        deliver, take = self.on_datagram, self.take
        if segment >= len(data):  # one datagram (or an empty one, for the relay to count)
            if not data or take is None or take(data, len(data)):
                deliver(data, addr)
            return
        for start in take(data, segment) if take else range(0, len(data), segment):
            deliver(data[start:start + segment], addr)

    # -- sending ---------------------------------------------------------------------------

    def send(self, data: Buffer, addr: tuple[str, int]) -> None:
        """Queue a datagram; it leaves when this read's batch is flushed (or at the end of
        this loop iteration when sent from elsewhere)."""
        self._queue([data], addr)

    def flush(self) -> None:
        self.flush_scheduled = False
        if not self.pending or self.closed:
            self.pending.clear()
            return
        pending, self.pending = self.pending, {}
        for addr, queue in pending.items():
            if not (self.blocked and addr in self.blocked):
                self._send_queue(queue, addr)

    def send_now(self, datagrams: list[Buffer], addr: tuple[str, int]) -> None:
        """Send these datagrams to `addr` at once, runs of equal size in one call each."""
        if not self.closed and not (self.blocked and addr in self.blocked):
            self._send_queue(datagrams, addr)

    def _send_queue(self, queue: list[Buffer], addr: tuple[str, int]) -> None:
        if len(queue) == 1 or not self.gso:
            for data in queue:
                self._sendto(data, addr)
        else:
            self._send_segmented(queue, addr)

    def send_run(self, buf: Buffer, segment: int, addr: tuple[str, int]) -> None:
        """Queue a run of datagrams of `segment` bytes (the last may be shorter) that lie
        end to end in `buf`, as `send` would each of them, without copying them apart; a run
        that fits one send with segmentation offload, with nothing queued ahead of it for
        `addr`, leaves at once."""
        if (self.gso and addr not in self.pending and len(buf) <= MAX_GSO_BYTES
                and len(buf) <= segment * MAX_GSO_SEGMENTS and not self.closed):
            if not (self.blocked and addr in self.blocked):  # nothing ahead of it: send now
                self._send_chunk(buf, segment, addr)
            return
        view = memoryview(buf)
        self._queue([view[o:o + segment] for o in range(0, len(buf), segment)], addr)

    def _queue(self, items: list[Buffer], addr: tuple[str, int]) -> None:
        if self.closed:
            return
        queue = self.pending.get(addr)
        if queue is None:
            self.pending[addr] = items
        else:
            queue.extend(items)
        if not self.flush_scheduled and self.loop is not None:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def _sendto(self, data: Buffer, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.on_error(BlockingIOError("send buffer full: datagram dropped"))
        except OSError as e:
            self.on_error(e)

    def _send_segmented(self, queue: list[Buffer], addr: tuple[str, int]) -> None:
        """Runs of equal size go as one send each; a run may end with one shorter datagram."""
        run: list[Buffer] = []
        size = 0
        for data in queue:
            n = len(data)
            fits = (run and n <= size and len(run) < MAX_GSO_SEGMENTS
                    and (len(run) + 1) * size <= MAX_GSO_BYTES)
            if fits:
                run.append(data)
                if n < size:  # a shorter one closes the run
                    self._send_run(run, size, addr)
                    run = []
                continue
            if run:
                self._send_run(run, size, addr)
            run, size = [data], n
        if run:
            self._send_run(run, size, addr)

    def _send_run(self, run: list[Buffer], size: int, addr: tuple[str, int]) -> None:
        if len(run) == 1:
            self._sendto(run[0], addr)
        else:
            self._send_chunk(b"".join(run), size, addr)

    def _send_chunk(self, buf: Buffer, size: int, addr: tuple[str, int]) -> None:
        """One send with segmentation offload of datagrams of `size` bytes lying end to end."""
        try:
            self.sock.sendmsg([buf], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
        except (BlockingIOError, InterruptedError):
            self.on_error(BlockingIOError("send buffer full: datagrams dropped"))
        except OSError as e:
            if self.gso and e.errno in _NO_GSO:  # one datagram per call from now on
                self.gso = False
                for start in range(0, len(buf), size):
                    self._sendto(buf[start:start + size], addr)
            else:
                self.on_error(e)
