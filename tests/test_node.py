"""The relay node's own bookkeeping, without its sockets: which links it watches closely."""

from __future__ import annotations

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
