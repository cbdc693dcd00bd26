"""Chat history at the edge (relay/history.py, relay/historystore.py), its protocol
(skymesh/edgeproto.py) and the SDK's pages (sdk/history.py), without processes; the
session's part is in test_edgesession.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.history import History, Kept
from relay.historystore import HistoryStore, HistoryStoreError
from sdk.history import Pages
from skymesh import edgeproto
from skymesh.edgeproto import ProtocolError

KEY = ("global", "demo/live")
OTHER = ("global", "demo/other")


def fill(h: History, count: int, at: float = 100.0, key=KEY, stream="fra:p1") -> None:
    for i in range(1, count + 1):
        h.add(key, "u1", i, f"m{i}", stream, i, at + i)


def bodies(kept) -> list[str]:
    return [k.body for k in kept]


def test_pages_count_back_from_the_newest():
    h = History(max_messages=50)
    fill(h, 30)
    page, more = h.page(KEY, 10, None, now=200.0)
    assert bodies(page) == [f"m{i}" for i in range(21, 31)] and more
    assert [k.n for k in page] == list(range(21, 31))
    page, more = h.page(KEY, 10, page[0].n, now=200.0)
    assert bodies(page) == [f"m{i}" for i in range(11, 21)] and more
    page, more = h.page(KEY, 100, page[0].n, now=200.0)
    assert bodies(page) == [f"m{i}" for i in range(1, 11)] and not more
    assert h.page(KEY, 10, 1, now=200.0) == ([], False)
    assert h.page(OTHER, 10, None, now=200.0) == ([], False)


def test_bounded_by_count_age_and_channels():
    h = History(max_messages=5, max_age_s=10.0, max_channels=2)
    fill(h, 8)  # at 101..108
    assert bodies(h.page(KEY, 100, None, 108.0)[0]) == ["m4", "m5", "m6", "m7", "m8"]
    # older than 10 s at 115: m4 (104) goes
    assert bodies(h.page(KEY, 100, None, 114.5)[0]) == ["m5", "m6", "m7", "m8"]
    h.expire(200.0)
    assert KEY not in h.channels
    fill(h, 1, key=("global", "a"))
    fill(h, 1, key=("global", "b"))
    fill(h, 1, key=("global", "c"))  # the channel that took a message least recently goes
    assert set(h.channels) == {("global", "b"), ("global", "c")}


def test_a_moved_publishers_messages_sent_again_are_kept_once():
    h = History()
    fill(h, 5, stream="fra:p1")
    # the publisher moved to ams: its stream names ams now, its ids go on
    for i in range(3, 8):
        h.add(KEY, "u1", i, f"m{i}", "ams:p1", i - 2, 200.0 + i)
    assert bodies(h.page(KEY, 100, None, 210.0)[0]) == [f"m{i}" for i in range(1, 8)]
    assert h.repeats == 3
    # another publisher's ids are its own
    h.add(KEY, "u2", 1, "other", "fra:p2", 1, 210.0)
    assert h.page(KEY, 1, None, 210.0)[0][0].body == "other"


def test_off_keeps_nothing():
    h = History(max_messages=0)
    assert h.add(KEY, "u", 1, "x", None, None, 1.0) is None
    assert h.page(KEY, 10, None, 1.0) == ([], False)
    with pytest.raises(ValueError):
        History(max_age_s=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40)), max_size=120),
       st.integers(1, 30), st.integers(1, 20))
def test_paging_back_hands_on_every_message_kept_once_in_order(adds, cap, limit):
    h = History(max_messages=cap, max_age_s=1e9)
    for i, (who, mid) in enumerate(adds):
        h.add(KEY, f"u{who}", mid, f"{who}:{mid}:{i}", f"r:p{who}", None, float(i))
    kept = list(h.channels[KEY].messages) if KEY in h.channels else []
    seen: list[Kept] = []
    before = None
    while True:
        page, more = h.page(KEY, limit, before, now=float(len(adds)))
        seen = page + seen
        if not more:
            break
        before = page[0].n
    assert seen == kept
    assert [k.n for k in seen] == sorted({k.n for k in seen})
    assert len(seen) <= cap


# -- the protocol ----------------------------------------------------------------------------

def test_history_requests_are_checked():
    assert edgeproto.history_asked({"request": 3, "limit": 20}) == (3, 20, None)
    assert edgeproto.history_asked({"request": 1, "limit": 1, "before": 9}) == (1, 1, 9)
    for bad in ({"request": 0, "limit": 5}, {"request": 1, "limit": 0},
                {"request": 1, "limit": 101}, {"request": True, "limit": 5},
                {"request": 1, "limit": 5, "before": 0}, {"request": "1", "limit": 5},
                {"request": 1, "limit": 5, "before": 1.5}):
        with pytest.raises(ProtocolError):
            edgeproto.history_asked(bad)
    assert edgeproto.join_history(None) == 0 and edgeproto.join_history(100) == 100
    with pytest.raises(ProtocolError):
        edgeproto.join_history(101)


def test_a_page_is_cut_into_lines_the_sdk_puts_back_together():
    messages = [edgeproto.kept("u", i, "x" * 900, "fra:p", i, 1000.0 + i, i)
                for i in range(1, 101)]
    lines = edgeproto.history_lines(7, messages, more=True)
    assert len(lines) > 1
    assert all(len(line) <= edgeproto.HISTORY_LINE_BYTES + 2048 for line in lines)
    decoded = [json.loads(line) for line in lines]
    assert [d["last"] for d in decoded] == [False] * (len(lines) - 1) + [True]
    pages = Pages()
    for d in decoded:
        assert 7 not in pages.done
        pages.take(d)
    page = pages.done[7]
    assert [m.mid for m in page.messages] == list(range(1, 101)) and page.more
    assert page.oldest == 1 and page.messages[0].stream == "fra:p"
    empty = json.loads(edgeproto.history_lines(2, [], more=False)[0])
    pages.take(empty)
    assert pages.done[2].messages == [] and pages.done[2].oldest is None


# -- the store --------------------------------------------------------------------------------

def test_the_store_keeps_history_across_a_restart(tmp_path):
    path = tmp_path / "history.db"

    async def first() -> None:
        h = History(max_messages=10, max_age_s=3600)
        store = HistoryStore(path, h)
        assert store.open() == 0
        for i in range(1, 26):
            kept = h.add(KEY, "u", i, f"m{i}", "fra:p", i, 4e9 + i)  # far future: not aged
            store.add(KEY, kept)
        kept = h.add(OTHER, "u", 1, "o1", None, None, 4e9)
        store.add(OTHER, kept)
        await store.close()  # what is queued is written
        assert store.written == 26

    asyncio.run(first())
    with sqlite3.connect(path) as db:  # trimmed to the last 10 of the channel on disk too
        assert db.execute("SELECT COUNT(*) FROM messages WHERE channel = ?",
                          (KEY[1],)).fetchone()[0] == 10

    h = History(max_messages=10, max_age_s=3600)
    store = HistoryStore(path, h)
    assert store.open() == 11
    page, more = h.page(KEY, 100, None, now=4e9 + 30)
    assert bodies(page) == [f"m{i}" for i in range(16, 26)] and not more
    # numbering and the publisher's last id go on from what was restored
    assert h.add(KEY, "u", 25, "m25 again", "ams:p", 1, 4e9 + 31) is None
    assert h.add(KEY, "u", 26, "m26", "ams:p", 2, 4e9 + 32).n == 26
    asyncio.run(store.close())


def test_a_store_that_cannot_be_used_says_which_file(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryStoreError, match="not-a-db"):
        HistoryStore(bad, History()).open()
    with pytest.raises(HistoryStoreError, match="no-such-dir"):
        HistoryStore(tmp_path / "no-such-dir" / "h.db", History()).open()
