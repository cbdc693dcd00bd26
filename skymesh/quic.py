"""What the edge and the SDK share on top of aioquic: a fine clock and coalesced sends.

uvloop's clock has 1 ms resolution, and aioquic takes the loop's clock for RTT samples, pacing
and loss timers; on loopback its pacer then stalls and latency jumps to seconds. aioquic also
builds and sends packets after every datagram received; coalescing those into one transmit per
loop iteration spares most of that work when datagrams arrive in bursts.
"""

from __future__ import annotations

import asyncio
import time

from aioquic.asyncio import QuicConnectionProtocol

ALPN = "skymesh/1"
MAX_DATAGRAM_FRAME_SIZE = 65536


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
    """A QuicConnectionProtocol on a fine clock that transmits once per loop iteration."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loop = FineClock(self._loop)

    def datagram_received(self, data: bytes | str, addr) -> None:
        self._quic.receive_datagram(data, addr, now=time.monotonic())
        self._process_events()
        self.transmit_soon()

    def transmit_soon(self) -> None:
        """Transmit at the end of this loop iteration (once, however often it is asked)."""
        self._transmit_soon()
