"""Anti-replay for channel datagrams at the relay that delivers them, in the manner of IPsec's
window (RFC 4303 section 3.4.3). Pure: no I/O, no clock.

What is numbered: every datagram a relay seals (media, each transmission of a message, each
acknowledgement) takes the next value of its sender's nonce counter (relay/datagram.py,
`Nonces`), and the nonce's random prefix names that sender's sequence space. The header's own
sequence number cannot serve: a message's retransmissions repeat it (they are genuine, and must
be acknowledged again), acknowledgements repeat their cumulative number, and media number per
relay. So a window is kept per (key epoch, sender prefix): a datagram whose counter is too far
behind the highest one seen, or was seen already, is a replay (or a copy of one), dropped and
counted by the caller.

The window is a bitmap of the last `size` counters below the highest seen (bit i: highest - i).
A window is created by the first genuine datagram of its sender under an epoch (only holders of
the key can seal one), and dropped when its epoch's key is retired, after which no datagram of
that epoch opens at all: a replay is refused for as long as its key is accepted. Memory stays
bounded by `max_windows`: beyond it the least recently used window goes (counted as
`evicted`); senders are relay processes, so this takes thousands of relay restarts within one
key's lifetime.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field

ACCEPTED, TOO_OLD, SEEN = "accepted", "too-old", "seen"


@dataclass
class Window:
    """One sender's window: `top` the highest counter accepted, `bits` the counters accepted
    within `size` below it (bit 0 is `top`)."""

    size: int = 1024
    top: int = -1  # nothing accepted yet
    bits: int = 0

    def check(self, seq: int) -> str:
        """What `update` would say, without changing anything."""
        if seq > self.top:
            return ACCEPTED
        offset = self.top - seq
        if offset >= self.size:
            return TOO_OLD
        return SEEN if self.bits >> offset & 1 else ACCEPTED

    def update(self, seq: int) -> str:
        """Accept `seq` if it is new and within the window; ACCEPTED, TOO_OLD or SEEN."""
        if seq > self.top:
            shift = seq - self.top
            self.bits = 1 if shift >= self.size else (self.bits << shift | 1) & self.mask
            self.top = seq
            return ACCEPTED
        offset = self.top - seq
        if offset >= self.size:
            return TOO_OLD
        bit = 1 << offset
        if self.bits & bit:
            return SEEN
        self.bits |= bit
        return ACCEPTED

    @property
    def mask(self) -> int:
        return (1 << self.size) - 1


@dataclass
class ReplayGuard:
    """The windows of every sender, by (epoch, sender); see the module's docstring."""

    size: int = 1024
    max_windows: int = 4096
    windows: OrderedDict[tuple[int, Hashable], Window] = field(default_factory=OrderedDict)
    evicted: int = 0  # windows dropped to stay within max_windows

    def __post_init__(self) -> None:
        if self.size < 1 or self.max_windows < 1:
            raise ValueError("the window size and the number of windows must be positive")

    def accept(self, epoch: int, sender: Hashable, seq: int) -> str:
        """ACCEPTED (and remembered), TOO_OLD or SEEN."""
        key = (epoch, sender)
        windows = self.windows
        window = windows.get(key)
        if window is None:
            window = windows[key] = Window(self.size)
            while len(windows) > self.max_windows:
                windows.popitem(last=False)
                self.evicted += 1
        else:
            windows.move_to_end(key)
        return window.update(seq)

    def retain(self, epochs: Collection[int]) -> None:
        """Forget the windows of every epoch not in `epochs` (keys retired)."""
        for key in [k for k in self.windows if k[0] not in epochs]:
            del self.windows[key]

    def __len__(self) -> int:
        return len(self.windows)
