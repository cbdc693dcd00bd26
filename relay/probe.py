"""Probe statistics for one directed link: a plain object fed probe events, no I/O."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from skymesh.linkstate import DEGRADED, DOWN, UNKNOWN, UP


@dataclass(frozen=True)
class ProbeSettings:
    timeout_s: float = 2.0  # a probe unanswered this long is lost
    window: int = 50  # outcomes kept for the loss rate
    min_window: int = 10  # replies over which the minimum RTT is taken
    alpha: float = 0.125  # smoothing of the RTT (as TCP's SRTT)
    down_after: int = 3  # consecutive losses that make a link down
    min_samples: int = 3  # replies before a link counts as measured
    degraded_loss: float = 0.02
    degraded_jitter_ms: float = 30.0


class LinkStats:
    """Smoothed RTT, windowed minimum RTT, jitter (RFC 3550 style, between consecutive RTTs)
    and windowed loss. The minimum is the latency estimate routing uses: one clean sample
    corrects it after a burst of queueing or a starved CPU, which the smoothed RTT takes many
    samples to forget."""

    def __init__(self, settings: ProbeSettings | None = None) -> None:
        self.settings = settings or ProbeSettings()
        self.outstanding: dict[int, float] = {}
        self.outcomes: deque[bool] = deque(maxlen=self.settings.window)
        self.recent: deque[float] = deque(maxlen=self.settings.min_window)
        self.srtt: float | None = None
        self.last_rtt: float | None = None
        self.jitter = 0.0
        self.samples = 0
        self.lost = 0
        self.consecutive_lost = 0
        self.last_reply: float | None = None

    def sent(self, seq: int, now: float) -> None:
        self.outstanding[seq] = now

    def received(self, seq: int, now: float) -> float | None:
        """Record a reply; returns the RTT in ms, or None for an unknown, late or repeated one."""
        sent_at = self.outstanding.pop(seq, None)
        if sent_at is None or now < sent_at:
            return None
        rtt = (now - sent_at) * 1000.0
        if not math.isfinite(rtt):
            return None
        self.outcomes.append(True)
        self.samples += 1
        self.consecutive_lost = 0
        self.last_reply = now
        if self.srtt is None:
            self.srtt = rtt
        else:
            self.srtt += self.settings.alpha * (rtt - self.srtt)
            self.jitter += (abs(rtt - self.last_rtt) - self.jitter) / 16
        self.last_rtt = rtt
        self.recent.append(rtt)
        return rtt

    def expire(self, now: float) -> int:
        """Count probes unanswered for longer than the timeout as lost."""
        late = [s for s, t in self.outstanding.items() if now - t > self.settings.timeout_s]
        for seq in late:
            del self.outstanding[seq]
            self.outcomes.append(False)
            self.lost += 1
            self.consecutive_lost += 1
        return len(late)

    @property
    def min_rtt(self) -> float | None:
        return min(self.recent) if self.recent else None

    @property
    def loss(self) -> float:
        if not self.outcomes:
            return 0.0
        return self.outcomes.count(False) / len(self.outcomes)

    @property
    def measured(self) -> bool:
        s = self.settings
        return self.samples >= s.min_samples or self.consecutive_lost >= s.down_after

    @property
    def state(self) -> str:
        s = self.settings
        if self.consecutive_lost >= s.down_after:
            return DOWN
        if self.srtt is None:
            return UNKNOWN
        if self.loss > s.degraded_loss or self.jitter > s.degraded_jitter_ms:
            return DEGRADED
        return UP

    def age(self, now: float) -> float:
        return -1.0 if self.last_reply is None else now - self.last_reply
