"""The drill's measuring core (skymesh/drillstats.py), on made-up records."""

from __future__ import annotations

import pytest

from skymesh.cli.drillstats import (
    Flow,
    FlowRecord,
    flows_through,
    largest_gap,
    message_check,
    next_slot,
    residency_violations,
    spread,
    summarize,
    through_again,
)


def row(zone: str, *path: str) -> dict:
    return {"zone": zone, "path": list(path), "dst": path[-1]}


ROUTES = [row("global", "a", "t", "b"), row("global", "b", "t", "a"), row("eu", "a", "t", "c"),
          row("global", "a", "b"), row("global", "t", "b"), row("global", "c", "a", "t")]


def test_flows_through_a_region_are_the_routes_it_carries_as_transit():
    flows, total = flows_through(ROUTES, region="t")
    assert total == 3  # not a->b, not t->b (t is an end), not c->a->t
    assert {f.name for f in flows} == {"global:a>b", "global:b>a", "eu:a>c"}


def test_flows_over_a_link_use_it_in_either_direction():
    flows, total = flows_through(ROUTES, link=("t", "a"))
    assert total == 4 and {f.name for f in flows} == {"global:a>b", "global:b>a", "eu:a>c",
                                                     "global:c>t"}


def test_spread_covers_every_zone_and_source_before_repeating():
    flows = [Flow("global", s, d, (s, "x", d)) for s in "abc" for d in "def"] + \
        [Flow("eu", "a", "d", ("a", "x", "d"))]
    picked = spread(flows, 4)
    assert {f.zone for f in picked} == {"global", "eu"}
    assert len({f.src for f in picked if f.zone == "global"}) == 3
    assert spread(flows, 100) == spread(flows, 10) and len(spread(flows, 100)) == 10


def test_largest_gap_counts_the_window_edges():
    assert largest_gap([1.0, 1.1, 1.5, 1.6], 1.0, 2.0) == pytest.approx(0.4)
    assert largest_gap([], 1.0, 2.0) == pytest.approx(1.0)  # nothing arrived at all
    assert largest_gap([0.5, 1.9], 1.0, 2.0) == pytest.approx(0.9)


def record(sent_every=0.01, until=3.0, lost=(), latency=0.05) -> FlowRecord:
    r = FlowRecord(Flow("global", "a", "b", ("a", "t", "b")))
    t, seq = 0.0, 0
    while t < until:
        seq += 1
        r.sent[seq] = t
        if not any(a <= t < b for a, b in lost):
            r.on_media(seq, t, t + latency)
        t += sent_every
    return r


def test_a_failure_window_shows_as_gap_loss_and_reroute_time():
    r = record(lost=[(1.0, 1.3)])
    assert through_again(r, 1.0) == pytest.approx(0.3, abs=0.011)
    s = summarize([r], fault_at=1.0, restored_at=2.0, end_at=3.0, frame_interval_s=0.01)
    assert s["gap_ms"]["max"] == pytest.approx(300, abs=11)
    assert s["gap_span_ms"]["max"] == pytest.approx(310, abs=11)
    assert s["media_lost"] == pytest.approx(30, abs=1)
    assert s["reroute_ms"] == pytest.approx(300, abs=11)
    assert s["flows"][0]["latency_ms"] == {"before": 50.0, "during": 50.0, "after": 50.0}


def test_the_gap_is_the_media_lost_not_the_receivers_jitter():
    """A late burst (the host busy for 200 ms) lengthens the receiver's silence, not the
    gap, which counts the span of frames that never arrived."""
    r = FlowRecord(Flow("global", "a", "b", ("a", "t", "b")))
    for seq in range(1, 301):
        t = seq * 0.01
        r.sent[seq] = t
        if 1.0 <= t < 1.1:
            continue  # lost
        late = 0.2 if 2.0 <= t < 2.2 else 0.0
        r.on_media(seq, t, max(t + 0.05, 2.25) if late else t + 0.05)
    s = summarize([r], fault_at=1.0, restored_at=2.9, end_at=3.0, frame_interval_s=0.01)
    assert s["gap_ms"]["max"] == pytest.approx(100, abs=6)
    assert s["arrival_gap_ms"]["max"] == pytest.approx(210, abs=6)  # 2.04 to 2.25


def test_messages_lost_duplicated_and_reordered_are_counted():
    r = record()
    r.messages_sent = 5
    for sender, mid in [("p", 1), ("p", 2), ("p", 2), ("p", 4), ("p", 3)]:
        r.on_message(sender, mid)
    assert message_check(r) == {"sent": 5, "lost": 1, "duplicated": 1, "out_of_order": 1}


def test_residency_violations_are_zone_traffic_outside_the_zone():
    zones = {"eu": ["a", "b"], "global": ["a", "b", "x"]}
    before = {"x": {"zone.eu.received": 0, "zone.global.received": 5}, "a": {}}
    after = {"x": {"zone.eu.received": 2, "zone.global.received": 9},
             "a": {"zone.eu.forwarded": 7, "dropped.foreign-zone": 1}}
    assert residency_violations(before, after, zones) == [
        {"region": "x", "counter": "zone.eu.received", "count": 2},
        {"region": "a", "counter": "dropped.foreign-zone", "count": 1}]
    assert residency_violations(after, after, zones) == []


def test_loss_runs_give_each_run_of_lost_frames_from_the_fault():
    from skymesh.cli.drillstats import FlowRecord, loss_runs
    r = FlowRecord(flow=None)  # type: ignore[arg-type]
    for seq in range(1, 21):
        r.sent[seq] = 100.0 + seq * 0.02
    for seq in [*range(1, 5), *range(8, 15), 16, *range(18, 21)]:
        r.got[seq] = r.sent[seq] + 0.05
    # lost: 5-7 (three, until 8 arrived), 15, 17
    assert loss_runs(r, fault_at=100.1) == [[0.0, 60.0, 3], [200.0, 20.0, 1], [240.0, 20.0, 1]]
    assert loss_runs(r, fault_at=100.1, limit=1) == [[0.0, 60.0, 3]]


def test_a_publisher_stall_lengthens_the_span_of_send_times_not_the_gap():
    """Three frames lost, then the publisher sends nothing for 200 ms (a starved client):
    the loss-derived gap is the three frames; the span of send times holds the stall."""
    r = FlowRecord(Flow("global", "a", "b", ("a", "t", "b")))
    t, seq = 0.0, 0
    while t < 3.0:
        seq += 1
        r.sent[seq] = t
        if not 1.0 <= t < 1.05:
            r.on_media(seq, t, t + 0.05)
        t += 0.22 if abs(t - 1.04) < 1e-9 else 0.02
    s = summarize([r], fault_at=1.0, restored_at=2.9, end_at=3.0, frame_interval_s=0.02)
    assert s["gap_ms"]["max"] == pytest.approx(60, abs=1)
    assert s["gap_span_ms"]["max"] == pytest.approx(280, abs=21)


def test_a_live_source_on_time_skips_nothing():
    slot, skipped_total = 0, 0
    for i in range(100):  # woken on time, a little late each time
        slot, skipped = next_slot(slot, (i + 0.3) / 50, 50)
        skipped_total += skipped
    assert (slot, skipped_total) == (100, 0)


def test_a_stalled_source_sends_the_frame_of_the_moment_and_counts_the_rest():
    # at 50 frames/s, slot 10 was sent at 0.18 s; the publisher wakes at 0.405 s
    slot, skipped = next_slot(10, 0.405, 50)
    assert (slot, skipped) == (21, 10)  # slot 21 is due at 0.4 s; 11..20 passed meanwhile
    assert next_slot(slot, 0.41, 50) == (22, 0)  # then on schedule again
    assert next_slot(10, 0.19, 50) == (11, 0)  # early: the next slot, and it waits for it
