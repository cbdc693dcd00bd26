"""A token bucket on an explicit clock: what every flood limit of the mesh is made of (a relay's
messages to the controller, a client's joins, a publisher's messages). Pure: no I/O."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "limited")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, "
                             f"{burst}")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), now
        self.limited = False  # the last take was refused: for logging a flood once

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Whether `cost` tokens were there (and are now spent)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.limited = False
            return True
        self.limited = True
        return False
