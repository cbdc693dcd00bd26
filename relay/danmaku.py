"""Danmaku storms, no I/O: viewers' comments, best-effort and thinned to what a screen can
show, so that ten thousand viewers commenting at once cost each viewer a bounded stream and
the host's messages (reliable, on their own path) are never held behind them.

- A user may comment `per_user_per_s` times a second (bursts of `per_user_burst`); beyond,
  the comment is refused, and the session told so (it stays joined).
- Every tick (TICK_S) each channel's comments are thinned twice, fairly: whoever commented
  is taken once before anyone is taken twice, in random order.
  - This edge's own comments go on to the channel's other edges, up to `forward_per_s`: a
    storm at one edge is not multiplied across the mesh.
  - What this edge shows its sessions, its own and the others', up to `show_per_s`, one batch
    per tick, the same batch for every session of the channel (encoded once).
- Nothing is queued from one tick to the next: a comment not taken is dropped and counted.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from skymesh.ratelimit import TokenBucket

ChannelKey = tuple[str, str]
Comment = tuple[str, str]  # (uid, body)

TICK_S = 0.2  # per tick each viewer costs the edge a packet and its ACK: this sets how many
# viewers a core holds (bench/danmaku.py), and five batches a second scroll smoothly
MAX_USERS_TRACKED = 100_000  # users' comment buckets kept; the least recently used go


@dataclass(frozen=True)
class DanmakuLimits:
    per_user_per_s: float = 1.0
    per_user_burst: float = 3.0
    show_per_s: float = 20.0  # comments a session is shown a second, at most
    forward_per_s: float = 200.0  # this edge's comments sent on per channel a second


def fair_sample(items: Sequence[Comment], k: int, rng: random.Random) -> list[Comment]:
    """Up to `k` of `items`, every user's first before anyone's second (in random order
    among users, each user's in the order they came)."""
    if k <= 0 or not items:
        return []
    if len(items) <= k:
        return list(items)
    by_user: OrderedDict[str, list[Comment]] = OrderedDict()
    for c in items:
        by_user.setdefault(c[0], []).append(c)
    users = list(by_user)
    rng.shuffle(users)
    out: list[Comment] = []
    round_ = 0
    while len(out) < k:
        took = False
        for u in users:
            mine = by_user[u]
            if round_ < len(mine):
                out.append(mine[round_])
                took = True
                if len(out) == k:
                    break
        if not took:
            break
        round_ += 1
    return out


@dataclass
class _Channel:
    local: list[Comment] = field(default_factory=list)
    remote: list[Comment] = field(default_factory=list)
    show_credit: float = 0.0
    forward_credit: float = 0.0


class Danmaku:
    def __init__(self, limits: DanmakuLimits | None = None,
                 rng: random.Random | None = None) -> None:
        self.limits = limits or DanmakuLimits()
        self.rng = rng or random.Random()
        self.channels: dict[ChannelKey, _Channel] = {}
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.counters = {"accepted": 0, "refused": 0, "shown": 0, "thinned": 0,
                         "forwarded": 0, "received": 0}

    def comment(self, key: ChannelKey, uid: str, body: str, now: float) -> bool:
        """A session's comment: taken for this tick, or refused (the user comments too
        fast)."""
        lim = self.limits
        bucket = self.buckets.get(uid)
        if bucket is None:
            bucket = self.buckets[uid] = TokenBucket(lim.per_user_per_s, lim.per_user_burst,
                                                     now)
            while len(self.buckets) > MAX_USERS_TRACKED:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(uid)
        if not bucket.take(now):
            self.counters["refused"] += 1
            return False
        self.channels.setdefault(key, _Channel()).local.append((uid, body))
        self.counters["accepted"] += 1
        return True

    def heard(self, key: ChannelKey, comments: Sequence[Comment]) -> None:
        """Comments another edge sent on (already thinned there)."""
        self.channels.setdefault(key, _Channel()).remote.extend(comments)
        self.counters["received"] += len(comments)

    def tick(self, members: dict[ChannelKey, bool], elapsed: float = TICK_S
             ) -> tuple[list[tuple[ChannelKey, list[Comment]]],
                        list[tuple[ChannelKey, list[Comment]]]]:
        """One tick: (what to send on to the other edges, what to show the sessions) per
        channel. `members`: whether each channel has sessions here (a channel without any is
        shown nothing and forgotten once quiet). `elapsed`: seconds since the last tick (a
        busy edge ticks late, and its rates are still per second)."""
        lim = self.limits
        span = max(TICK_S, elapsed)
        forward, show = [], []
        for key in list(self.channels):
            c = self.channels[key]
            if not c.local and not c.remote:
                del self.channels[key]
                continue
            c.forward_credit = min(c.forward_credit + lim.forward_per_s * elapsed,
                                   2 * lim.forward_per_s * span)
            c.show_credit = min(c.show_credit + lim.show_per_s * elapsed,
                                2 * lim.show_per_s * span)
            if c.local:
                sent = fair_sample(c.local, int(c.forward_credit), self.rng)
                c.forward_credit -= len(sent)
                if sent:
                    forward.append((key, sent))
                    self.counters["forwarded"] += len(sent)
            everything = c.local + c.remote
            shown = fair_sample(everything, int(c.show_credit), self.rng) \
                if members.get(key) else []
            c.show_credit -= len(shown)
            if shown:
                show.append((key, shown))
            self.counters["shown"] += len(shown)
            self.counters["thinned"] += len(everything) - len(shown)
            c.local, c.remote = [], []
        return forward, show
