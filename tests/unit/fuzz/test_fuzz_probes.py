"""Hostile probe datagrams: relay/packets.py's decoder, and the probe scheduler's receive path
(relay/scheduler.py `on_probe_packet`, which feeds relay/probe.py's statistics)."""

from __future__ import annotations

import math
import random
from collections import Counter

from fuzzing import fuzz, mutations, uints
from hypothesis import given
from hypothesis import strategies as st

from relay import packets
from relay.scheduler import ProbeScheduler, RelaySettings
from relay.tables import Entry, RouteTables
from skymesh.linkstate import STATES

region_ids = st.from_regex(r"[a-z0-9-]{2,32}", fullmatch=True)
FABRIC = {1: b"f" * 32, 2: b"g" * 32}
KEYS = packets.ProbeKeys.derive(1, FABRIC)  # the mesh's: sends under 1, accepts 1 and 2
FORGER = packets.ProbeKeys.derive(1, {1: b"x" * 32, 2: b"y" * 32, 9: b"z" * 32})
kinds = st.sampled_from([packets.PROBE, packets.PROBE_REPLY])
valid_probes = st.builds(packets.encode_probe, kinds, uints(32), region_ids, st.just(KEYS),
                         st.sampled_from([1, 2]))
forged_probes = st.builds(packets.encode_probe, kinds, uints(32), region_ids, st.just(FORGER),
                          st.sampled_from([1, 2, 9]))
probe_bytes = st.one_of(st.binary(max_size=80), valid_probes, mutations(valid_probes),
                        forged_probes, st.binary(min_size=1400, max_size=1600))


@fuzz()
@given(probe_bytes)
def test_decode_rejects_or_returns_a_wellformed_probe(data):
    try:
        probe = packets.decode(data, KEYS)
    except packets.MalformedPacket as e:
        assert str(e) and e.reason in packets.REASONS
        return
    assert probe.kind in (packets.PROBE, packets.PROBE_REPLY)
    assert 0 <= probe.seq <= 0xFFFFFFFF
    assert 2 <= len(probe.region) <= 32 and probe.region.isascii()
    assert probe.epoch in KEYS.by_epoch
    # one encoding
    assert packets.encode_probe(probe.kind, probe.seq, probe.region, KEYS, probe.epoch) == data


@fuzz()
@given(forged_probes)
def test_nothing_under_another_key_decodes(data):
    try:
        packets.decode(data, KEYS)
    except packets.MalformedPacket as e:
        assert e.reason in ("epoch", "bad-tag")
    else:
        raise AssertionError("a forged probe decoded")


PEERS = {"ams": ("10.0.0.1", 9001), "par": ("10.0.0.2", 9002)}


def scheduler() -> tuple[ProbeScheduler, list]:
    tables = RouteTables("fra")
    assert tables.apply(1, [Entry("ams", "ams", ("fra", "ams"), 5.0, backup_next_hop="par")]) \
        is None
    sent: list = []
    s = ProbeScheduler("fra", RelaySettings(), tables,
                       lambda data, addr, region: sent.append((data, addr, region)),
                       random.Random(1), Counter())
    s.configure_keys(1, FABRIC)
    s.tables_replaced(0.0)
    s.set_peers(dict(PEERS), 0.0)
    return s, sent


# what arrives at the probe socket: anything, and replies (genuine or forged) naming the peers
# with sequence numbers near the ones sent
@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[str, object, float]]:
    events = []
    for _ in range(draw(st.integers(1, 40))):
        dt = draw(st.sampled_from([0.0, 0.001, 0.05, 0.3, 2.5, 1e6]))
        what = draw(st.sampled_from(["step", "bytes", "reply"]))
        if what == "bytes":
            events.append((what, draw(probe_bytes), dt))
        elif what == "reply":
            kind = draw(st.sampled_from([packets.PROBE_REPLY, packets.PROBE]))
            region = draw(st.sampled_from(["ams", "par", "fra", "zz"]))
            seq = draw(st.one_of(st.integers(0, 64), uints(32)))
            keys = draw(st.sampled_from([KEYS, FORGER]))
            events.append((what, packets.encode_probe(kind, seq, region, keys), dt))
        else:
            events.append((what, None, dt))
    return events


@fuzz(0.5)
@given(arrivals())
def test_scheduler_takes_any_datagram_and_keeps_sane_statistics(events):
    s, sent = scheduler()
    now = 0.0
    for what, data, dt in events:
        now += dt
        if what == "step":
            s.step(now, Counter())
        else:
            s.on_probe_packet(data, ("192.0.2.9", 4000), now)
    for region, stats in s.stats.items():
        assert stats.state in STATES
        for value in (stats.srtt, stats.last_rtt, stats.min_rtt, stats.jitter):
            assert value is None or (math.isfinite(value) and value >= 0), (region, value)
        assert 0 <= stats.loss <= 1
        assert stats.lost >= 0 and stats.samples >= 0
        assert stats.samples <= s.seq  # no more samples than probes sent
        assert math.isfinite(stats.timeout()) and stats.timeout() > 0
    for data, _, _ in sent:
        assert packets.decode(data, KEYS).epoch == 1  # what it sends is well-formed
    # nothing forged was a sample: every RTT sample is a genuine reply to a probe sent
    replies = sum(1 for what, data, _ in events if what != "step"
                  and _genuine_reply(data))
    assert sum(stats.samples for stats in s.stats.values()) <= replies


def _genuine_reply(data: bytes) -> bool:
    try:
        return packets.decode(data, KEYS).kind == packets.PROBE_REPLY
    except packets.MalformedPacket:
        return False
