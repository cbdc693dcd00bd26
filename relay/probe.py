"""Probe statistics for one directed link: a plain object fed probe events, no I/O."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from skymesh.linkstate import DEGRADED, DOWN, LINK, UNKNOWN, UP

LATE_KEPT = 64  # missed probes remembered, whose late replies still count


@dataclass(frozen=True)
class ProbeSettings:
    timeout_s: float = 2.0  # a probe unanswered this long is missed, whatever the RTT
    # once the RTT is known, a probe is missed sooner, as TCP's retransmission timeout: when
    # unanswered after the smoothed RTT plus jitter_factor times the jitter, or plus
    # margin_s if that is more (and never before min_timeout_s)
    jitter_factor: float = 4.0
    margin_s: float = 0.02
    min_timeout_s: float = 0.05
    window: int = 50  # outcomes kept for the loss rate
    # the minimum RTT is taken over the replies of the last min_window_s, and at least the
    # last min_window replies
    min_window: int = 10
    min_window_s: float = 10.0
    alpha: float = 0.125  # smoothing of the RTT (as TCP's SRTT)
    down_after: int = LINK.down_after  # consecutive missed probes that make a link down
    up_after: int = 3  # consecutive replies that bring a down link back up
    min_samples: int = 3  # replies before a link counts as measured
    degraded_loss: float = LINK.degraded_loss
    degraded_jitter_ms: float = LINK.degraded_jitter_ms


class LinkStats:
    """Smoothed RTT, windowed minimum RTT, jitter (RFC 3550 style, between consecutive RTTs)
    and windowed loss. The minimum is the latency estimate routing uses: one clean sample
    corrects it after a burst of queueing or a starved CPU, which the smoothed RTT takes many
    samples to forget.

    A probe is missed when no reply came within its timeout, which follows the smoothed RTT
    and its jitter so that a dead link is found in a few probe intervals, not seconds.
    `down_after` misses in a row make the link down; a late reply still proves it alive (and
    teaches the timeout a longer RTT), and `up_after` replies in a row bring it back."""

    def __init__(self, settings: ProbeSettings | None = None) -> None:
        self.settings = settings or ProbeSettings()
        self.outstanding: dict[int, float] = {}
        # (seq, replied in time or late): the window of the loss rate
        self.outcomes: deque[tuple[int, bool]] = deque(maxlen=self.settings.window)
        self.recent: deque[tuple[float, float]] = deque()  # (time, RTT in ms)
        self.srtt: float | None = None
        self.last_rtt: float | None = None
        self.jitter = 0.0
        self.samples = 0
        self.probes_sent = 0  # every probe, for the metrics beside `lost`
        self.lost = 0
        self.consecutive_lost = 0
        self.consecutive_ok = 0
        self.is_down = False
        self.is_degraded = False
        self.late: dict[int, float] = {}  # missed probes a reply may still come for
        self._timeout: float | None = None  # cached until the next reply
        self.liveness: set[int] = set()  # outstanding probes that are not RTT samples
        self.last_reply: float | None = None

    def configure(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self._timeout = None

    def sent(self, seq: int, now: float, sample: bool = True) -> None:
        """A probe left. Liveness probes (`sample` False: the extra ones to the links routes
        use) count for detection and loss but not for the RTT statistics, so that a link
        probed more often does not look faster for having more chances at a clean sample."""
        self.outstanding[seq] = now
        self.probes_sent += 1
        if not sample:
            self.liveness.add(seq)

    def node_changed(self) -> None:
        """The peer region's transit node changed (relay/peernodes.py) while the link was up:
        the probes in flight to the node left count neither as answered nor as missed, and
        the loss window starts again (its misses were that node's). The RTT measured stays:
        the path to the region is much the same."""
        self.outstanding.clear()
        self.late.clear()
        self.liveness.clear()
        self.outcomes.clear()
        self.consecutive_lost = 0
        self.consecutive_ok = 0
        self._judge()

    def received(self, seq: int, now: float) -> float | None:
        """Record a reply; returns the RTT in ms, or None for an unknown or repeated one."""
        sent_at = self.outstanding.pop(seq, None)
        on_time = sent_at is not None
        if not on_time:
            sent_at = self.late.pop(seq, None)
        if sent_at is None or now < sent_at:
            return None
        rtt = (now - sent_at) * 1000.0
        if not math.isfinite(rtt):
            return None
        if on_time:
            self.outcomes.append((seq, True))
        else:
            self._late_reply(seq)
        self.consecutive_lost = 0
        self.consecutive_ok += 1
        if self.is_down and self.consecutive_ok >= self.settings.up_after:
            self.is_down = False
        self.last_reply = now
        # every reply, on time or late, feeds the smoothed RTT and the jitter (the timeout's
        # and the degraded state's); the windowed minimum, which routing uses, takes only
        # the measuring probes'
        if self.srtt is None:
            self.srtt = rtt
        else:
            self.srtt += self.settings.alpha * (rtt - self.srtt)
            self.jitter += (abs(rtt - self.last_rtt) - self.jitter) / 16
        self.last_rtt = rtt
        self._timeout = None
        if seq in self.liveness:
            self.liveness.discard(seq)
            if on_time:
                self._judge()
            return rtt
        self.samples += 1
        self._judge()
        recent, s = self.recent, self.settings
        recent.append((now, rtt))
        while len(recent) > s.min_window and recent[0][0] < now - s.min_window_s:
            recent.popleft()
        return rtt

    def _late_reply(self, seq: int) -> None:
        """A probe counted as missed was only late: it was not lost (a busy host delays
        replies past the timeout now and then, and such loss would cost the link's routes)."""
        self.lost -= 1
        for i, (q, ok) in enumerate(self.outcomes):
            if q == seq and not ok:
                self.outcomes[i] = (seq, True)
                return

    def timeout(self) -> float:
        """Seconds after which an unanswered probe is missed."""
        if self._timeout is None:
            s = self.settings
            if self.srtt is None:
                return s.timeout_s
            wait = (self.srtt + max(s.jitter_factor * self.jitter, s.margin_s * 1000)) / 1000
            self._timeout = min(s.timeout_s, max(s.min_timeout_s, wait))
        return self._timeout

    def expire(self, now: float) -> int:
        """Count the probes unanswered past the timeout as missed."""
        if not self.outstanding:
            return 0
        timeout = self.timeout()
        late = [q for q, t in self.outstanding.items() if now - t > timeout]
        for seq in late:
            self.late[seq] = self.outstanding.pop(seq)
            self.outcomes.append((seq, False))
            self.lost += 1
            self.consecutive_lost += 1
            self.consecutive_ok = 0
        if len(self.late) > LATE_KEPT:
            for seq in sorted(self.late)[:len(self.late) - LATE_KEPT]:
                del self.late[seq]
                self.liveness.discard(seq)
        if self.consecutive_lost >= self.settings.down_after:
            self.is_down = True
        if late:
            self._judge()
        return len(late)

    def next_expiry(self) -> float | None:
        """When the oldest outstanding probe will count as missed."""
        if not self.outstanding:
            return None
        return min(self.outstanding.values()) + self.timeout()

    @property
    def min_rtt(self) -> float | None:
        return min(rtt for _, rtt in self.recent) if self.recent else None

    @property
    def loss(self) -> float:
        if not self.outcomes:
            return 0.0
        return sum(not ok for _, ok in self.outcomes) / len(self.outcomes)

    @property
    def measured(self) -> bool:
        return self.samples >= self.settings.min_samples or self.is_down

    @property
    def state(self) -> str:
        if self.is_down:
            return DOWN
        if self.srtt is None:
            return UNKNOWN
        return DEGRADED if self.is_degraded else UP

    def _judge(self) -> None:
        """Degraded above either threshold; healthy again only well below both (at half the
        loss and 70% of the jitter), so that a link near a threshold does not flap."""
        s = self.settings
        if self.is_degraded:
            self.is_degraded = (self.loss > s.degraded_loss / 2
                                or self.jitter > s.degraded_jitter_ms * 0.7)
        else:
            self.is_degraded = self.loss > s.degraded_loss or self.jitter > s.degraded_jitter_ms

    def age(self, now: float) -> float:
        return -1.0 if self.last_reply is None else now - self.last_reply
