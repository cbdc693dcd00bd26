"""The relay's batched UDP socket, with real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket

from relay.udpio import BatchedUDP

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
