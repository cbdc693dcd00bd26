"""The relay node's own bookkeeping, without its sockets: which links it watches closely."""

from __future__ import annotations

from itertools import pairwise

from relay.node import RelayNode, RelaySettings
from relay.tables import Entry

IDLE_S = 30.0


def node() -> RelayNode:
    n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0),
                  settings=RelaySettings(watch_idle_s=IDLE_S, neighbour_probe_interval_s=0.1))
    assert n.tables.apply(1, [Entry("ams", "ams", ("fra", "ams"), 5.0, backup_next_hop="par"),
                              Entry("lhr", "ams", ("fra", "ams", "lhr"), 9.0,
                                    backup_next_hop="par"),
                              Entry("sin", "sin", ("fra", "sin"), 80.0)]) is None
    for region in ("ams", "par", "sin"):
        n.next_probe[region] = 1000.0  # far off: the measuring cadence
    return n


def test_links_traffic_went_over_and_their_backups_are_watched_until_idle():
    n = node()
    n.note_traffic(100.0)
    assert n.watched == frozenset()
    n.fabric.sent_to["ams"] += 3
    n.note_traffic(100.25)
    assert n.watched == {"ams", "par"} and not n.fabric.sent_to
    # newly watched links are probed within one neighbour interval, not at their cadence
    assert n.next_probe["ams"] <= 100.35 and n.next_probe["par"] <= 100.35
    assert n.next_probe["sin"] == 1000.0
    n.note_traffic(100.25 + IDLE_S - 1)
    assert n.watched == {"ams", "par"}  # quiet, not idle yet
    n.fabric.sent_to["sin"] += 1
    n.note_traffic(100.25 + IDLE_S + 1)
    assert n.watched == {"sin"}  # ams idle past watch_idle_s: back to the cadence


def test_a_miss_on_a_watched_link_is_checked_again_closely_and_found_down_sooner():
    """A watched peer stops answering: after its first missed probe it is probed every
    recheck interval, so three misses come within about two timeouts of the failure, not
    two neighbour intervals and a timeout."""
    n = node()
    n.set_peers({"ams": ("127.0.0.1", 9)})
    n.next_probe["ams"] = 0.0  # on the test's clock
    n.watched = frozenset({"ams"})
    sent: list[tuple[float, int]] = []
    clock = [0.0]
    n.send_to_region = lambda region, addr, data: sent.append((clock[0], n.seq))
    answering = True
    rtt = 0.03
    now, fail_at, down_at = 0.0, 2.0, None
    while now < 4.0 and down_at is None:
        clock[0] = now
        stats = n.stats["ams"]
        if answering:  # replies to what was sent at least one RTT ago
            for seq, at in list(stats.outstanding.items()):
                if now - at >= rtt:
                    stats.received(seq, at + rtt)
        answering = now < fail_at
        n.probe_due(now, everyone=True)
        if n.stats["ams"].is_down:
            down_at = now
        now = round(now + 0.005, 3)
    timeout = n.stats["ams"].timeout()
    assert down_at is not None
    assert "ams" in n.down_links
    # three misses within two timeouts and two rechecks of the failure, plus one interval
    # for the probe in flight when it failed
    assert down_at - fail_at <= 0.1 + 2 * timeout + 2 * n.settings.recheck_interval_s + 0.01
    after = [t for t, _ in sent if t > fail_at]
    gaps = [b - a for a, b in pairwise(after)]
    assert gaps and min(gaps) < 0.05  # probed closely after the first miss
    before = [t for t, _ in sent if 1.0 < t < fail_at]
    assert min(b - a for a, b in pairwise(before)) > 0.09  # not while it answered
