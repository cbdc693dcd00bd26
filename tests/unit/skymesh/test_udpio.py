"""The relay's batched UDP socket, with real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket

from skymesh.net.udpio import BatchedUDP

DEADLINE = 5.0


async def _collect(udp_sink: list, n: int) -> None:
    while len(udp_sink) < n:
        await asyncio.sleep(0.005)


def _receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(DEADLINE)
    return s


def test_batched_sends_arrive_as_the_datagrams_they_were():
    """Runs of equal size go out segmented, the rest one by one; the receiver, which does not
    ask for receive offload, sees every datagram as it was queued, in order."""
    async def main():
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None)
        rcv = _receiver()
        try:
            sent = [bytes([i]) * 1200 for i in range(20)] + [b"short"] + [b"x" * 700] * 3 + \
                   [b"y" * 1300]
            for data in sent:
                udp.send(data, rcv.getsockname())
            udp.flush()
            got = [rcv.recv(65535) for _ in sent]
            assert got == sent
        finally:
            udp.close()
            rcv.close()

    asyncio.run(main())


def test_a_run_in_one_buffer_leaves_after_what_was_queued_before_it():
    async def main():
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None)
        rcv = _receiver()
        try:
            first = b"first" * 240
            run = [bytes([i]) * 1200 for i in range(70)] + [b"tail"]  # more than one send
            udp.send(first, rcv.getsockname())
            udp.send_run(bytearray(b"".join(run)), 1200, rcv.getsockname())
            udp.flush()
            assert [rcv.recv(65535) for _ in range(len(run) + 1)] == [first, *run]
        finally:
            udp.close()
            rcv.close()

    asyncio.run(main())


def test_a_run_that_fits_one_send_leaves_at_once_and_not_to_a_blocked_address():
    async def main():
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None)
        rcv, cut = _receiver(), _receiver()
        try:
            run = [bytes([i]) * 1200 for i in range(40)] + [b"tail"]
            udp.blocked = frozenset({cut.getsockname()})
            udp.send_run(bytearray(b"".join(run)), 1200, cut.getsockname())
            udp.send_run(bytearray(b"".join(run)), 1200, rcv.getsockname())
            assert not udp.pending  # sent, not queued
            assert [rcv.recv(65535) for _ in run] == run
            cut.settimeout(0.2)
            try:
                leaked = cut.recv(65535)
            except TimeoutError:
                leaked = None
            assert leaked is None
        finally:
            udp.close()
            rcv.close()
            cut.close()

    asyncio.run(main())


def test_a_taker_sees_each_read_and_what_it_leaves_is_delivered():
    """The relay's transit looks at each read first, as (buffer, segment size); only the
    datagrams it leaves reach on_datagram."""
    async def main():
        got: list[bytes] = []
        seen: list[tuple[int, int]] = []
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: got.append(d))
        sender = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None)

        def take(buf: bytes, segment: int) -> list[int]:
            seen.append((len(buf), segment))
            return [o for o in range(0, len(buf), segment) if buf[o] != ord("t")]
        udp.take = take
        try:
            run = [(b"t" if i % 2 else b"d") * 1000 for i in range(10)]
            for data in run:
                sender.send(data, udp.sockname())
            sender.flush()
            await asyncio.wait_for(_collect(got, 5), DEADLINE)
            assert got == [d for d in run if d[:1] == b"d"]
            assert sum(n for n, _ in seen) == 10_000
            assert all(segment == 1000 for _, segment in seen)
        finally:
            udp.close()
            sender.close()

    asyncio.run(main())


def _send_segmented(sock: socket.socket, buf: bytes, segment: int, addr) -> None:
    try:
        sock.sendmsg([buf], [(socket.SOL_UDP, 103, segment.to_bytes(2, "little"))], 0, addr)
    except OSError:  # no segmentation offload here: the same datagrams one by one
        for o in range(0, len(buf), segment):
            sock.sendto(buf[o:o + segment], addr)


def test_reads_that_piled_up_from_one_sender_reach_the_taker_as_one_run():
    """What a busy relay finds waiting is forwarded together: reads of one sender that line
    up are joined, and a read from another sender, of another size or after a shorter last
    datagram starts a new run. Every datagram arrives once, in order."""
    async def main():
        got: list[bytes] = []
        seen: list[tuple[bytes, int]] = []
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: got.append(d))
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def take(buf: bytes, segment: int) -> list[int]:
            seen.append((bytes(buf[o] for o in range(0, len(buf), segment)), segment))
            return list(range(0, len(buf), segment))
        udp.take = take
        try:
            to = udp.sockname()
            # all of it is queued before the loop gets to read: loopback sends are synchronous
            _send_segmented(a, b"a" * 500, 100, to)
            _send_segmented(a, b"b" * 450, 100, to)  # ends with a 50-byte datagram
            _send_segmented(a, b"c" * 300, 100, to)
            b.sendto(b"f" * 100, to)
            a.sendto(b"d" * 60, to)
            a.sendto(b"e" * 100, to)
            a.sendto(b"g" * 100, to)
            a.sendto(b"", to)  # empty: handed on as it is, for the relay to count
            await asyncio.wait_for(_collect(got, 18), DEADLINE)
            assert b"".join(got) == (b"a" * 500 + b"b" * 450 + b"c" * 300 + b"f" * 100
                                     + b"d" * 60 + b"e" * 100 + b"g" * 100)
            assert got[-1] == b""
            assert seen == [(b"aaaaabbbbb", 100), (b"ccc", 100), (b"f", 100), (b"d", 60),
                            (b"eg", 100)]
        finally:
            udp.close()
            a.close()
            b.close()

    asyncio.run(main())


def test_reads_every_datagram_including_offloaded_runs():
    """Datagrams from a plain sender and a run sent with segmentation offload all reach
    on_datagram one by one."""
    async def main():
        got: list[bytes] = []
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: got.append(d))
        sender = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None)
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            run = [bytes([65 + i]) * 1000 for i in range(10)]
            for data in run:
                sender.send(data, udp.sockname())
            sender.flush()  # one segmented send when the kernel offers it
            plain.sendto(b"alone", udp.sockname())
            await asyncio.wait_for(_collect(got, 11), DEADLINE)
            assert got[:10] == run and got[10] == b"alone"
        finally:
            udp.close()
            sender.close()
            plain.close()

    asyncio.run(main())


def test_socket_errors_are_reported_not_raised():
    async def main():
        errors: list[OSError] = []
        udp = await BatchedUDP.bind(("127.0.0.1", 0), lambda d, a: None, errors.append)
        rcv = _receiver()
        try:
            udp.send(b"x" * 70000, rcv.getsockname())  # larger than any UDP datagram
            udp.flush()
            assert len(errors) == 1 and isinstance(errors[0], OSError)
            udp.send(b"still works", rcv.getsockname())
            udp.flush()
            assert rcv.recv(100) == b"still works"
        finally:
            udp.close()
            rcv.close()
        udp.send(b"after close", ("127.0.0.1", 9))  # ignored, no exception
        udp.flush()

    asyncio.run(main())
