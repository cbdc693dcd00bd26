"""Chat that remembers, no I/O: the recent messages of each channel this edge delivers, kept
where they were delivered so that a client joining here gets the last N from its own edge
without a wide-area request, and older pages on request.

Bounded three ways: messages per channel (the oldest go first), their age, and the number of
channels (the channel that took a message least recently goes whole). Each message kept gets
a number in its channel's history here, `n` (1, 2, 3, ... in the order delivered here), which
pages count back from. A message is kept once: a publisher that moved to another edge sends
what was not settled again, with the same ids, and its stream name (`relay:P`) then names
another relay but the same P; a message of P with an id at or below the last kept of P is
that again, not new (the SDK's rule, sdk/inbox.py).

The shell (`relay/edge.py`) adds what it delivers and answers the clients' requests; a
`relay/historystore.py` store, when configured, keeps the same messages in SQLite across
restarts and hands them back through `restore`.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

ChannelKey = tuple[str, str]  # (zone, "app/channel")

DEFAULT_MESSAGES = 200  # per channel
DEFAULT_MAX_AGE_S = 3600.0
DEFAULT_CHANNELS = 5000
MAX_PUBLISHERS_TRACKED = 4096  # per channel: the ids of the most recent publishers' messages


@dataclass(frozen=True, slots=True)
class Kept:
    """One message as delivered here: `n` its number in the channel's history here, `at`
    when (Unix seconds)."""

    n: int
    at: float
    uid: str
    mid: int
    body: str
    stream: str | None = None
    seq: int | None = None


def _number(kept: Kept) -> int:
    return kept.n


def publisher_of(stream: str | None, uid: str) -> str:
    """Who a message's ids belong to: the publisher part of its stream (`relay:P`), or, for
    a message not numbered by a relay, its user."""
    if stream:
        return stream.rpartition(":")[2]
    return f"uid:{uid}"


class ChannelHistory:
    """One channel's messages kept here, oldest first."""

    __slots__ = ("messages", "next_n", "last_ids")

    def __init__(self) -> None:
        self.messages: deque[Kept] = deque()
        self.next_n = 1
        # the highest id kept of each publisher, the most recent publishers last
        self.last_ids: OrderedDict[str, int] = OrderedDict()


class History:
    """Every channel's history at this edge."""

    def __init__(self, max_messages: int = DEFAULT_MESSAGES,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 max_channels: int = DEFAULT_CHANNELS) -> None:
        if max_messages < 0 or max_age_s <= 0 or max_channels < 1:
            raise ValueError("history: messages >= 0, a positive age and at least a channel")
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.max_channels = max_channels
        self.channels: OrderedDict[ChannelKey, ChannelHistory] = OrderedDict()
        self.kept_total = 0  # messages taken since start (not those restored)
        self.repeats = 0  # messages not taken because they were kept already

    @property
    def enabled(self) -> bool:
        return self.max_messages > 0

    def add(self, key: ChannelKey, uid: str, mid: int, body: str, stream: str | None,
            seq: int | None, at: float) -> Kept | None:
        """Keep a message delivered here now (`at`); None when it is one kept already, or
        history is off."""
        if not self.enabled:
            return None
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = ChannelHistory()
            while len(self.channels) > self.max_channels:
                self.channels.popitem(last=False)
        else:
            self.channels.move_to_end(key)
        who = publisher_of(stream, uid)
        last = channel.last_ids.get(who)
        if last is not None and mid <= last:
            self.repeats += 1
            return None
        channel.last_ids[who] = mid
        channel.last_ids.move_to_end(who)
        if len(channel.last_ids) > MAX_PUBLISHERS_TRACKED:
            channel.last_ids.popitem(last=False)
        kept = Kept(channel.next_n, at, uid, mid, body, stream, seq)
        channel.next_n += 1
        channel.messages.append(kept)
        while len(channel.messages) > self.max_messages:
            channel.messages.popleft()
        self.kept_total += 1
        self._age(channel, at)
        return kept

    def restore(self, key: ChannelKey, kept: Iterable[Kept], now: float) -> None:
        """Messages kept before a restart (oldest first, as a store hands them back): the
        channel's numbering goes on after them."""
        if not self.enabled:
            return
        channel = self.channels.setdefault(key, ChannelHistory())
        for k in kept:
            if channel.messages and k.n <= channel.messages[-1].n:
                continue
            channel.messages.append(k)
            channel.next_n = k.n + 1
            who = publisher_of(k.stream, k.uid)
            channel.last_ids[who] = max(k.mid, channel.last_ids.get(who, k.mid))
        while len(channel.messages) > self.max_messages:
            channel.messages.popleft()
        self._age(channel, now)
        if not channel.messages:
            del self.channels[key]
        while len(self.channels) > self.max_channels:
            self.channels.popitem(last=False)

    def page(self, key: ChannelKey, limit: int, before: int | None, now: float
             ) -> tuple[list[Kept], bool]:
        """Up to `limit` messages of the channel, the newest before number `before` (None:
        the newest of all), oldest first; and whether older ones are kept."""
        channel = self.channels.get(key)
        if channel is None or limit <= 0:
            return [], False
        self._age(channel, now)
        messages = channel.messages
        if not messages:
            return [], False
        end = len(messages)
        if before is not None:
            end = bisect.bisect_left(messages, before, key=_number)
        start = max(0, end - limit)
        return [messages[i] for i in range(start, end)], start > 0

    def expire(self, now: float) -> None:
        """Forget what grew too old, and channels left with nothing."""
        for key in list(self.channels):
            channel = self.channels[key]
            self._age(channel, now)
            if not channel.messages:
                del self.channels[key]

    def _age(self, channel: ChannelHistory, now: float) -> None:
        oldest = now - self.max_age_s
        messages = channel.messages
        while messages and messages[0].at < oldest:
            messages.popleft()

    def __len__(self) -> int:
        return sum(len(c.messages) for c in self.channels.values())
