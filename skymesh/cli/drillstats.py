"""The measuring core of chaos drills, no I/O: which flows a failure touches, and what the
flows' records say about it (gaps, loss, latency by phase, reroute time, residency)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise


@dataclass(frozen=True)
class Flow:
    zone: str
    src: str
    dst: str
    path: tuple[str, ...]  # as routed before the drill

    @property
    def name(self) -> str:
        return f"{self.zone}:{self.src}>{self.dst}"


def flows_through(routes: Iterable[Mapping], region: str | None = None,
                  link: tuple[str, str] | None = None, limit: int = 16) -> tuple[list[Flow], int]:
    """The (zone, src, dst) routes that carry traffic through `region` (as transit) or over
    `link` (either direction), from admin route rows ({zone, path, ...} with path[0] the
    source). Returns up to `limit` of them, spread over zones and sources, and how many there
    are in all."""
    carried = []
    for r in routes:
        path = tuple(r["path"])
        if len(path) < 2:
            continue
        if region is not None and region in path[1:-1]:
            carried.append(Flow(r["zone"], path[0], path[-1], path))
        elif link is not None and any({a, b} == set(link) for a, b in pairwise(path)):
            carried.append(Flow(r["zone"], path[0], path[-1], path))
    carried.sort(key=lambda f: (f.zone, f.src, f.dst))
    return spread(carried, limit), len(carried)


def spread(flows: list[Flow], limit: int) -> list[Flow]:
    """Up to `limit` flows, taken round-robin over zones, then over sources within a zone,
    so that every zone (and as many sources as fit) is represented."""
    by_zone: dict[str, dict[str, list[Flow]]] = {}
    for f in flows:
        by_zone.setdefault(f.zone, {}).setdefault(f.src, []).append(f)
    queues = {z: [list(fs) for _, fs in sorted(srcs.items())] for z, srcs in by_zone.items()}
    picked: list[Flow] = []
    while len(picked) < limit and any(queues.values()):
        for zone in sorted(queues):
            sources = queues[zone]
            if not sources or len(picked) >= limit:
                continue
            first = sources.pop(0)
            picked.append(first.pop(0))
            if first:
                sources.append(first)
    return picked


@dataclass
class FlowRecord:
    """What one flow's publisher sent and its subscriber got. Times are wall-clock seconds."""

    flow: Flow
    sent: dict[int, float] = field(default_factory=dict)  # sequence -> send time
    got: dict[int, float] = field(default_factory=dict)  # sequence -> arrival (first copy)
    arrivals: list[float] = field(default_factory=list)
    messages_sent: int = 0
    skipped: int = 0  # frame slots the publisher missed while it was stalled
    messages_got: dict[str, list[int]] = field(default_factory=dict)  # sender -> ids in order

    def on_media(self, seq: int, sent_at: float, now: float) -> None:
        if seq not in self.got:
            self.got[seq] = now
            self.arrivals.append(now)
            self.sent.setdefault(seq, sent_at)

    def on_message(self, sender: str, mid: int) -> None:
        self.messages_got.setdefault(sender, []).append(mid)


def next_slot(slot: int, elapsed_s: float, rate: float) -> tuple[int, int]:
    """A live source's next frame slot after `slot` (slot n is due (n - 1) / rate seconds
    into the run), `elapsed_s` into its run, and how many slots it skips: those that passed
    while it was stalled (it sends the frame of the moment, not a burst of late ones)."""
    current = int(elapsed_s * rate) + 1
    if current > slot + 1:
        return current, current - slot - 1
    return slot + 1, 0


def largest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest time without one of `times` within [start, end] (the window's edges
    count)."""
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max((b - a for a, b in pairwise(points)), default=0.0)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def through_again(record: FlowRecord, fault_at: float) -> float | None:
    """Seconds from the fault until packets sent after it got through again (None: none
    did)."""
    after = [record.sent[s] for s in record.got if record.sent.get(s, 0.0) >= fault_at]
    return min(after) - fault_at if after else None


def lost_runs(record: FlowRecord, start: float = -math.inf, end: float = math.inf
              ) -> Iterator[tuple[list[float], float]]:
    """Runs of consecutive lost frames among those sent within [start, end], in order: the
    send times of each run's frames, and that of the frame after it (the run's last one
    when none follows)."""
    seqs = [s for s in sorted(record.sent) if start <= record.sent[s] <= end]
    times = [record.sent[s] for s in seqs]
    lost = [s not in record.got for s in seqs]
    i = 0
    while i < len(times):
        if not lost[i]:
            i += 1
            continue
        j = i
        while j < len(times) and lost[j]:
            j += 1
        yield times[i:j], times[j] if j < len(times) else times[j - 1]
        i = j


def loss_runs(record: FlowRecord, fault_at: float, limit: int = 20) -> list[list[float]]:
    """Runs of consecutive lost frames, in order, as [start, span] in ms of send time from
    the fault (span: until the next frame that arrived) and the frames lost; at most
    `limit`, the longest."""
    runs = [[round((run[0] - fault_at) * 1000, 1), round((after - run[0]) * 1000, 1), len(run)]
            for run, after in lost_runs(record)]
    return sorted(sorted(runs, key=lambda x: -x[1])[:limit])


def message_check(record: FlowRecord) -> dict[str, int]:
    """Messages lost (sent but never received), duplicated and out of order, for a flow
    whose publisher numbered its messages 1..messages_sent."""
    ids = [i for mids in record.messages_got.values() for i in mids]
    distinct = set(ids)
    out_of_order = sum(1 for mids in record.messages_got.values()
                       for a, b in pairwise(mids) if b < a)
    return {"sent": record.messages_sent,
            "lost": len(set(range(1, record.messages_sent + 1)) - distinct),
            "duplicated": len(ids) - len(distinct), "out_of_order": out_of_order}


def phase_latency(record: FlowRecord, start: float, end: float) -> float | None:
    """Median one-way latency (ms) of the packets sent within [start, end)."""
    lat = [(record.got[s] - record.sent[s]) * 1000 for s in record.got
           if start <= record.sent.get(s, -1.0) < end]
    return percentile(lat, 50)


def residency_violations(before: Mapping[str, Mapping[str, int]],
                         after: Mapping[str, Mapping[str, int]],
                         zones: Mapping[str, Iterable[str]]) -> list[dict]:
    """Growth of a zone's traffic counters at a region outside the zone, and of datagrams
    dropped as of a foreign zone anywhere: each is traffic where residency forbids it."""
    members = {z: set(rs) for z, rs in zones.items()}
    found = []
    for region, counters in after.items():
        old = before.get(region, {})
        for name, value in counters.items():
            grew = value - old.get(name, 0)
            if grew <= 0:
                continue
            parts = name.split(".")
            if name == "dropped.foreign-zone":
                found.append({"region": region, "counter": name, "count": grew})
            elif (len(parts) == 3 and parts[0] == "zone" and parts[1] in members
                  and region not in members[parts[1]]):
                found.append({"region": region, "counter": name, "count": grew})
    return found


def longest_loss(record: FlowRecord, start: float, end: float) -> int:
    """The most frames lost in a row among those sent within [start, end]."""
    return max((len(run) for run, _ in lost_runs(record, start, end)), default=0)


def summarize(records: list[FlowRecord], fault_at: float, restored_at: float,
              end_at: float, frame_interval_s: float = 0.02) -> dict:
    """The drill's figures over its flows: per flow and overall. `frame_interval_s` is the
    publishers' nominal spacing of frames."""
    flows, gaps, spans, silences, through, lost_media = [], [], [], [], [], 0
    messages = {"sent": 0, "lost": 0, "duplicated": 0, "out_of_order": 0}
    for r in records:
        # the media gap, from the loss (RFC 6894's loss-derived convergence time): the most
        # frames lost in a row, at the nominal frame spacing. The span of their send times
        # also holds the publisher's own stalls (on a loaded host, 100-250 ms after single
        # lost frames), and the receiver's longest silence the path's latency change and
        # the host's jitter: both are kept beside it.
        gap = longest_loss(r, fault_at - 1.0, restored_at) * frame_interval_s
        span = largest_gap((r.sent[s] for s in r.got), fault_at - 1.0, restored_at)
        silence = largest_gap(r.arrivals, fault_at - 1.0, restored_at)
        again = through_again(r, fault_at)
        lost = len(r.sent.keys() - r.got.keys())
        m = message_check(r)
        for k in messages:
            messages[k] += m[k]
        gaps.append(gap * 1000)
        spans.append(span * 1000)
        silences.append(silence * 1000)
        if again is not None:
            through.append(again * 1000)
        lost_media += lost
        flows.append({
            "flow": r.flow.name, "zone": r.flow.zone, "src": r.flow.src, "dst": r.flow.dst,
            "path_before": list(r.flow.path), "gap_ms": round(gap * 1000, 1),
            "gap_span_ms": round(span * 1000, 1),
            "arrival_gap_ms": round(silence * 1000, 1),
            "through_again_ms": None if again is None else round(again * 1000, 1),
            "media_sent": len(r.sent), "media_lost": lost, "media_skipped": r.skipped,
            "loss_runs": loss_runs(r, fault_at),
            "messages": m,
            "latency_ms": {"before": _r(phase_latency(r, 0.0, fault_at)),
                           "during": _r(phase_latency(r, fault_at, restored_at)),
                           "after": _r(phase_latency(r, restored_at, end_at))}})
    return {
        "gap_ms": _spread(gaps), "gap_span_ms": _spread(spans),
        "arrival_gap_ms": _spread(silences),
        # from the fault until traffic sent after it got through again: the median flow's
        # and the slowest
        "reroute_ms": _r(percentile(through, 50)), "reroute_ms_max": _r(max(through, default=None)),
        "media_sent": sum(len(r.sent) for r in records), "media_lost": lost_media,
        "media_skipped": sum(r.skipped for r in records),
        "messages_sent": messages["sent"], "messages_lost": messages["lost"],
        "messages_duplicated": messages["duplicated"],
        "messages_out_of_order": messages["out_of_order"], "flows": flows}


def _spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": _r(percentile(values, 50)), "p99": _r(percentile(values, 99)),
            "max": _r(max(values, default=None))}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
