"""Read receipts (relay/receipts.py): a small channel's receipts as they travel, a large
channel's reads counted at each edge and added up at the publisher's. No I/O."""

from __future__ import annotations

import json

import pytest

from relay.receipts import AGGREGATE_S, MAX_LEVELS, Receipts, receipt_body
from skymesh import edgeproto
from skymesh.edgeproto import ProtocolError

KEY = ("global", "demo/live")


def test_a_receipt_travels_and_only_news_counts():
    fra, ams = Receipts("fra/n1"), Receipts("ams/n1")
    assert fra.read(KEY, "ann", "p1", 5, counted=False)
    assert not fra.read(KEY, "ann", "p1", 4, counted=False)  # behind what ann said
    assert fra.due(10.0) == []  # a small channel's reads are not counted
    assert ams.heard(KEY, "fra/n1", receipt_body("ann", "p1", 5)) == ("ann", "p1", 5)
    assert ams.heard(KEY, "ams/n1", receipt_body("x", "p1", 1)) is None  # its own
    assert ams.heard(KEY, "fra/n1", "not json") is None
    assert ams.heard(KEY, "fra/n1", json.dumps({"uid": "a", "of": "p", "upto": True})) is None


def test_a_large_channels_reads_are_counted_where_the_publisher_is():
    fra, ams, sin = Receipts("fra/n1"), Receipts("ams/n1"), Receipts("sin/n1")
    for i in range(30):  # 30 readers at ams: 10 read up to 3, 20 up to 7
        ams.read(KEY, f"a{i}", "host", 3 if i < 10 else 7, counted=True)
    for i in range(5):  # 5 at sin read up to 9
        sin.read(KEY, f"s{i}", "host", 9, counted=True)
    fra.read(KEY, "f0", "host", 7, counted=True)  # one at the publisher's own edge
    for origin, r in (("ams/n1", ams), ("sin/n1", sin)):
        (key, body), = r.due(0.0)
        assert key == KEY and r.due(0.5) == []  # at most every AGGREGATE_S
        assert fra.heard(KEY, origin, body) is None
    assert fra.changes() == [(KEY, "host")]
    assert fra.totals(KEY, "host") == [(9, 5), (7, 26), (3, 36)]
    # one more reader at ams, announced a period later: the totals move
    ams.read(KEY, "late", "host", 9, counted=True)
    assert ams.due(0.5) == []
    (_, body), = ams.due(AGGREGATE_S)
    fra.heard(KEY, "ams/n1", body)
    assert fra.totals(KEY, "host")[0] == (9, 6)
    # ams's relay gone: its readers no longer counted
    fra.members_are(KEY, frozenset({"fra", "sin"}))
    assert fra.totals(KEY, "host") == [(9, 5), (7, 6)]


def test_count_announcements_stay_bounded():
    r = Receipts("fra/n1")
    for i in range(200):
        r.read(KEY, f"u{i}", "host", i, counted=True)
    (_, body), = r.due(0.0)
    levels = json.loads(body)["reads"]["host"]
    assert len(levels) == MAX_LEVELS and sum(n for _, n in levels) == 200


def test_read_requests_are_checked():
    assert edgeproto.read_asked(edgeproto.read("fra/n1:abcd", 7)) == ("abcd", 7)
    for bad in ({"stream": "nocolon", "id": 1}, {"stream": "fra:p", "id": -1},
                {"stream": "fra:p", "id": True}, {"stream": 5, "id": 1},
                {"stream": "f:" + "p" * 300, "id": 1}):
        with pytest.raises(ProtocolError):
            edgeproto.read_asked({"type": "read", **bad})
