"""The edge session's state machine, fed events with explicit times: no sockets, no loop."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.edgesession import (
    Close,
    EdgeLimits,
    EdgeSession,
    EnterChannel,
    LeaveChannel,
    Link,
    PostComment,
    PublishingChanged,
    PublishMessage,
    Resume,
    Send,
    SendHistory,
    SendPresence,
    SetTimer,
    SourceLimits,
)
from skymesh import edgeproto
from skymesh.edgeproto import decode_line, encode_line
from skymesh.token import ERROR_CODES, generate_key, issue, public_key_of

APP, APP_KEY = "app1", generate_key()  # the app's private key: it signs; the edge has the public
OTHER_KEY = generate_key()  # another app's
ALL = ("join", "publish-media", "publish-messages")
T0 = 1_700_000_000
KEY = ("eu", "app1/c1")


@dataclass
class Edge:
    region: str = "amsterdam"
    zones: frozenset[str] = frozenset({"eu", "global"})
    app_keys: dict[str, tuple[bytes, ...]] = field(default_factory=lambda: {
        APP: (public_key_of(APP_KEY),), "app2": (public_key_of(OTHER_KEY),)})
    drained: bool = False
    counters: Counter = field(default_factory=Counter)
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    sources: SourceLimits = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.sources = SourceLimits(self.limits)


def token(channel="c1", uid="u", zone="eu", privileges=ALL, key=APP_KEY, ttl=3600, now=T0):
    return issue(APP, key, channel, uid, zone, privileges, ttl, now=now)


def line(obj: dict) -> bytes:
    return encode_line(obj)


def sent(actions) -> list[dict]:
    return [decode_line(a.line.rstrip(b"\n")) for a in actions if isinstance(a, Send)]


def joined(tok=None, edge=None, now=T0, channel="c1"):
    """A session that joined with `tok` (all privileges for an hour by default)."""
    s = EdgeSession(edge or Edge())
    actions = s.data_received(line(edgeproto.join(tok or token(), channel)), now)
    assert [type(a) for a in actions] == [SetTimer, EnterChannel, Send], actions
    return s


def refusal(code: str, reason: str) -> Close:
    return Close(ERROR_CODES[code], reason)


# -- join ------------------------------------------------------------------------------------------

def test_join():
    edge = Edge()
    s = EdgeSession(edge)
    actions = s.data_received(line(edgeproto.join(token(), "c1")), T0 + 5)
    assert actions[:2] == [SetTimer(T0 + 3600 - 30), EnterChannel(KEY)]
    assert sent(actions) == [{"type": "joined", "uid": "u", "channel": "c1",
                              "region": "amsterdam", "zone": "eu", "privileges": list(ALL),
                              "expires_at": T0 + 3600}]
    assert s.key == KEY and s.grant.uid == "u" and not s.closed
    assert s.media_allowed and s.publishes
    assert edge.counters == {"joined": 1}


@pytest.mark.parametrize("first", [edgeproto.renew(token()), edgeproto.publish(1, "hi"),
                                   {"type": "joined"}, {}])
def test_anything_before_the_join_is_refused(first):
    edge = Edge()
    s = EdgeSession(edge)
    assert s.line_received(first, T0) == [refusal("malformed", edgeproto.JOIN_FIRST)]
    assert s.closed and edge.counters == {"refused": 1, "refused.malformed": 1}


@pytest.mark.parametrize("tok, channel, code, needle", [
    (token(key=OTHER_KEY), "c1", "bad-signature", "key"),
    (token(ttl=60, now=T0 - 3600), "c1", "expired", "expired"),
    (token(now=T0 + 3600), "c1", "not-yet-valid", "future"),
    (token(channel="elsewhere"), "c1", "wrong-channel", "elsewhere"),
    (token(zone="cn"), "c1", "wrong-zone", "'cn'"),
    (token(privileges=("publish-media",)), "c1", "missing-privilege", "join"),
    ("sm1.nonsense", "c1", "malformed", ""),
    (17, "c1", "malformed", "string"),
    (token(channel="c" * 60), "c" * 60, "malformed", "at most 63 bytes"),
    (token(), "", "malformed", "join needs a channel"),
    (token(), None, "malformed", "join needs a channel"),
])
def test_join_refused(tok, channel, code, needle):
    edge = Edge()
    s = EdgeSession(edge)
    [close] = s.line_received({"type": "join", "token": tok, "channel": channel}, T0)
    assert isinstance(close, Close) and close.code == ERROR_CODES[code]
    assert needle in close.reason
    assert s.closed and s.grant is None and not s.media_allowed
    # counted, and by reason: the edge's metrics label refusals with it
    assert edge.counters == {"refused": 1, f"refused.{code}": 1}


def test_wrong_zone_names_what_the_edge_serves():
    s = EdgeSession(Edge())
    [close] = s.line_received(edgeproto.join(token(zone="cn"), "c1"), T0)
    assert close == refusal("wrong-zone", edgeproto.wrong_zone("cn", "amsterdam",
                                                               {"eu", "global"}))


def test_the_longest_channel_id_joins():
    s = joined(token(channel="c" * 59), channel="c" * 59)
    assert s.key == ("eu", "app1/" + "c" * 59)


def test_a_drained_edge_refuses_joins_first_of_all():
    edge = Edge(drained=True)
    s = EdgeSession(edge)
    assert s.line_received({"type": "join"}, T0) == [
        Close(edgeproto.DRAINED_ERROR, "region 'amsterdam' is drained: connect to another region")]
    assert edge.counters == {"refused": 1, "refused.drained": 1}


def test_a_drain_keeps_joined_sessions():
    edge = Edge()
    s = joined(edge=edge)
    edge.drained = True
    assert sent(s.line_received(edgeproto.renew(token()), T0 + 10))[0]["type"] == "renewed"
    assert not s.closed


def test_edge_configuration_is_read_at_each_event():
    edge = Edge(zones=frozenset({"global"}))
    assert EdgeSession(edge).line_received(edgeproto.join(token(), "c1"), T0)[0].code == \
        ERROR_CODES["wrong-zone"]
    edge.zones = frozenset({"eu"})
    joined(edge=edge)


def test_a_second_join_is_unexpected():
    s = joined()
    assert s.line_received(edgeproto.join(token(), "c1"), T0) == [
        SetTimer(None), LeaveChannel(KEY),
        refusal("malformed", "unexpected message type 'join'")]


# -- renewal ---------------------------------------------------------------------------------------

def test_renewal():
    edge = Edge()
    s = joined(token(privileges=("join", "publish-media")), edge=edge)
    fresh = token(ttl=7200, now=T0 + 100)
    actions = s.line_received(edgeproto.renew(fresh), T0 + 100)
    assert actions[0] == SetTimer(T0 + 100 + 7200 - 30)
    assert PublishingChanged() not in actions  # published before, publishes now
    assert sent(actions) == [{"type": "renewed", "expires_at": T0 + 7300,
                              "privileges": list(ALL)}]
    assert edge.counters["renewed"] == 1 and s.grant.expires_at == T0 + 7300


def test_a_renewal_that_changes_publishing_says_so():
    s = joined(token(privileges=("join",)))
    assert not s.media_allowed and not s.publishes
    actions = s.line_received(edgeproto.renew(token(privileges=ALL)), T0)
    assert PublishingChanged() in actions and s.media_allowed
    actions = s.line_received(edgeproto.renew(token(privileges=("join",))), T0)
    assert PublishingChanged() in actions and not s.media_allowed


@pytest.mark.parametrize("tok, code, reason", [
    (token(uid="someone-else"), "malformed", edgeproto.RENEWAL_MISMATCH),
    (token(zone="global"), "malformed", edgeproto.RENEWAL_MISMATCH),
    (token(key=OTHER_KEY), "bad-signature", None),
    (token(channel="c9"), "wrong-channel", None),
    (token(ttl=60, now=T0 - 3600), "expired", None),
    (None, "malformed", None),
])
def test_bad_renewal_ends_the_session(tok, code, reason):
    edge = Edge()
    s = joined(edge=edge)
    actions = s.line_received({"type": "renew", "token": tok}, T0 + 1)
    assert actions[:2] == [SetTimer(None), LeaveChannel(KEY)]
    assert actions[2].code == ERROR_CODES[code]
    if reason:
        assert actions[2].reason == reason
    assert len(actions) == 3 and s.closed
    assert edge.counters["renewed"] == 0 and edge.counters["refused"] == 1


# -- expiry ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl, notice", [(3600, 30), (60, 30), (20, 10), (2, 1)])
def test_expiry_notice_then_close(ttl, notice):
    edge = Edge()
    s = EdgeSession(edge)
    actions = s.line_received(edgeproto.join(token(ttl=ttl), "c1"), T0)
    expires = T0 + ttl
    assert actions[0] == SetTimer(expires - notice)
    assert s.timer_fired(expires - notice - 0.25) == [SetTimer(expires - notice)]  # early
    actions = s.timer_fired(expires - notice)
    assert sent(actions) == [{"type": "token-expiring", "expires_at": expires}]
    assert actions[-1] == SetTimer(expires)
    assert s.timer_fired(expires - 0.001) == [SetTimer(expires)]
    assert s.timer_fired(expires + 0.5) == [
        LeaveChannel(KEY), refusal("expired", "the token expired and was not renewed")]
    assert s.closed and edge.counters["refused"] == 1
    assert s.timer_fired(expires + 1) == []


def test_a_token_already_within_its_notice_is_warned_of_at_once():
    """Issued 100 s ago for 120 s: 20 s left, less than the 30 s notice."""
    s = EdgeSession(Edge())
    actions = s.line_received(edgeproto.join(token(ttl=120, now=T0 - 100), "c1"), T0)
    [timer] = [a for a in actions if isinstance(a, SetTimer)]
    assert timer.at <= T0  # due already: the shell fires it at once
    assert sent(s.timer_fired(T0)) == [{"type": "token-expiring", "expires_at": T0 + 20}]


def test_a_renewal_after_the_notice_starts_over():
    s = joined(token(ttl=60))
    s.timer_fired(T0 + 30)
    actions = s.line_received(edgeproto.renew(token(ttl=60, now=T0 + 40)), T0 + 40)
    assert actions[0] == SetTimer(T0 + 100 - 30)
    assert s.timer_fired(T0 + 60) == [SetTimer(T0 + 70)]  # the old expiry no longer counts
    assert sent(s.timer_fired(T0 + 70))[0]["type"] == "token-expiring"


# -- messages --------------------------------------------------------------------------------------

def test_messages_are_published():
    edge = Edge()
    s = joined(edge=edge)
    assert s.line_received(edgeproto.publish(5, "hi"), T0) == [PublishMessage(KEY, "u", 5, "hi")]
    assert edge.counters["messages"] == 1


def test_a_join_that_resumes_asks_for_what_it_missed():
    edge = Edge()
    s = EdgeSession(edge)
    after = {"fra:abc": 41, "ams/n2:def": 0}
    actions = s.data_received(line(edgeproto.join(token(), "c1", after)), T0)
    assert [type(a) for a in actions] == [SetTimer, EnterChannel, Send, Resume]
    assert actions[-1] == Resume(KEY, after)
    assert edge.counters["resumed"] == 1
    # asked again later, for a gap still open; an empty ask is nothing
    assert s.line_received(edgeproto.resume({"fra:abc": 50}), T0) == [
        Resume(KEY, {"fra:abc": 50})]
    assert s.line_received(edgeproto.resume({}), T0) == []


@pytest.mark.parametrize("points", [[1], {"fra:abc": -1}, {"fra:abc": "1"},
                                    {"no-colon": 1}, {"fra:abc": True},
                                    {f"s:{i}": 1 for i in range(257)},
                                    {"x" * 300 + ":a": 1}])
def test_a_bad_resume_is_refused(points):
    s = EdgeSession(Edge())
    msg = edgeproto.join(token(), "c1")
    msg["resume"] = points
    assert s.data_received(line(msg), T0)[-1] == Close(
        edgeproto.MALFORMED, edgeproto.BAD_RESUME)
    s = joined()
    assert s.line_received({"type": "resume", "after": points}, T0)[-1] == Close(
        edgeproto.MALFORMED, edgeproto.BAD_RESUME)


def test_a_join_may_name_its_publisher_stream():
    s = EdgeSession(Edge())
    actions = s.data_received(line(edgeproto.join(token(), "c1", publisher="ab" * 8)), T0)
    assert actions[1] == EnterChannel(KEY, "ab" * 8)
    for bad in ("AB" * 8, "ab", "g" * 16, 7):
        msg = edgeproto.join(token(), "c1")
        msg["publisher"] = bad
        assert EdgeSession(Edge()).data_received(line(msg), T0)[-1] == Close(
            edgeproto.MALFORMED, edgeproto.BAD_PUBLISHER)


def test_resumes_are_paced_as_messages_are():
    edge = Edge(limits=EdgeLimits(messages_per_s=1, messages_burst=2))
    s = joined(edge=edge)
    for _ in range(2):
        assert s.line_received(edgeproto.resume({"fra:a": 1}), T0)
    assert s.line_received(edgeproto.resume({"fra:a": 1}), T0)[-1].code == \
        edgeproto.RATE_LIMITED


def test_messages_need_publish_messages():
    s = joined(token(privileges=("join", "publish-media")))
    assert s.line_received(edgeproto.publish(5, "hi"), T0)[-1] == refusal(
        "missing-privilege", "the token does not grant publish-messages")


@pytest.mark.parametrize("msg, reason", [
    ({"type": "message", "id": "5", "body": "hi"}, edgeproto.BAD_MESSAGE),
    ({"type": "message", "id": True, "body": "hi"}, edgeproto.BAD_MESSAGE),
    ({"type": "message", "id": -1, "body": "hi"}, edgeproto.BAD_MESSAGE),
    ({"type": "message", "id": 1, "body": 5}, edgeproto.BAD_MESSAGE),
    ({"type": "message", "id": 1, "body": "é" * 451}, edgeproto.MESSAGE_TOO_LONG),
    ({"type": "message", "id": 1, "body": "\udc80"}, edgeproto.MESSAGE_NOT_TEXT),
])
def test_bad_messages_are_refused(msg, reason):
    edge = Edge()
    s = joined(edge=edge)
    assert s.line_received(msg, T0)[-1] == refusal("malformed", reason)
    assert edge.counters["messages"] == 0


def test_the_largest_body_passes():
    assert joined().line_received(edgeproto.publish(1, "é" * 450), T0) == [
        PublishMessage(KEY, "u", 1, "é" * 450)]


# -- the stream ------------------------------------------------------------------------------------

def test_lines_in_one_chunk_are_taken_in_order_until_a_close():
    edge = Edge()
    s = EdgeSession(edge)
    data = (line(edgeproto.join(token(), "c1")) + line(edgeproto.publish(1, "a"))
            + b"garbage\n" + line(edgeproto.publish(2, "b")))
    actions = s.data_received(data, T0)
    assert [type(a) for a in actions] == [SetTimer, EnterChannel, Send, PublishMessage,
                                          SetTimer, LeaveChannel, Close]
    assert actions[-1] == refusal("malformed", "a line is not JSON")
    assert edge.counters["messages"] == 1


def test_lines_split_across_chunks():
    s = EdgeSession(Edge())
    data = line(edgeproto.join(token(), "c1"))
    assert s.data_received(data[:10], T0) == []
    assert sent(s.data_received(data[10:], T0))[0]["type"] == "joined"


@pytest.mark.parametrize("data, reason", [
    (b"[1]\n", "a line is not a JSON object"),
    (b"\n", "a line is not JSON"),
    (b"x" * (64 * 1024 + 1), "line too long"),
])
def test_unreadable_streams_are_refused(data, reason):
    assert EdgeSession(Edge()).data_received(data, T0) == [refusal("malformed", reason)]


def test_a_long_partial_line_after_a_join_is_refused_and_leaves():
    s = EdgeSession(Edge())
    actions = s.data_received(line(edgeproto.join(token(), "c1")) + b"{" * (64 * 1024 + 1),
                              T0)
    assert actions[-3:] == [SetTimer(None), LeaveChannel(KEY),
                            refusal("malformed", "line too long")]


# -- media and the connection's end ----------------------------------------------------------------

def test_media_before_the_join_is_dropped_and_counted():
    edge = Edge()
    s = EdgeSession(edge)
    assert not s.media_allowed
    assert s.datagram_received() == [] and edge.counters["media_dropped"] == 1
    assert not s.closed


def test_media_without_publish_media_is_refused():
    s = joined(token(privileges=("join", "publish-messages")))
    assert not s.media_allowed
    assert s.datagram_received() == [SetTimer(None), LeaveChannel(KEY), refusal(
        "missing-privilege", "the token does not grant publish-media")]
    assert s.datagram_received() == []


def test_the_connection_ending_leaves_the_channel_without_a_refusal():
    edge = Edge()
    s = joined(edge=edge)
    assert s.connection_terminated() == [SetTimer(None), LeaveChannel(KEY)]
    assert s.closed and not s.media_allowed and edge.counters["refused"] == 0
    assert s.connection_terminated() == []
    assert s.data_received(line(edgeproto.publish(1, "late")), T0) == []
    assert EdgeSession(Edge()).connection_terminated() == []


# -- any sequence of events ------------------------------------------------------------------------

LINES = [
    edgeproto.join(token(ttl=60), "c1"),
    edgeproto.join(token(ttl=60, privileges=("join",)), "c1"),
    edgeproto.join(token(zone="cn"), "c1"),
    edgeproto.join(token(), "c2"),
    edgeproto.renew(token(ttl=90, now=T0 + 20)),
    edgeproto.renew(token(ttl=60, privileges=("join", "publish-messages"), now=T0 + 20)),
    edgeproto.renew(token(uid="other")),
    edgeproto.publish(1, "hi"),
    edgeproto.publish(2, "é" * 451),
    {"type": "message", "id": "x", "body": "hi"},
    {"type": "nonsense"},
]
EVENTS = st.one_of(
    st.tuples(st.just("line"), st.sampled_from(range(len(LINES)))),
    st.tuples(st.just("bytes"), st.binary(max_size=12)),
    st.tuples(st.just("timer"), st.just(0)),
    st.tuples(st.just("datagram"), st.just(0)),
    st.tuples(st.just("drain"), st.booleans()),
    st.tuples(st.just("end"), st.just(0)),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(EVENTS, st.floats(0, 40)), max_size=25))
def test_any_sequence_of_events(events):
    edge = Edge()
    s = EdgeSession(edge)
    now = float(T0)
    member = False
    timer: float | None = None
    ended = False
    for (kind, arg), dt in events:
        now += dt
        if kind == "line":
            actions = s.data_received(line(LINES[arg]), now)
        elif kind == "bytes":
            actions = s.data_received(arg, now)
        elif kind == "timer":
            if timer is None:
                continue
            timer = None  # a timer fires once (early, on time or late)
            actions = s.timer_fired(now)
        elif kind == "datagram":
            actions = [] if s.media_allowed else s.datagram_received()
        elif kind == "drain":
            edge.drained = arg
            continue
        else:
            actions = s.connection_terminated()
        if ended:
            assert actions == [], "an action after the session closed"
        for i, action in enumerate(actions):
            if isinstance(action, EnterChannel):
                assert not member
                member = True
            elif isinstance(action, LeaveChannel):
                assert member
                member = False
            elif isinstance(action, SetTimer):
                timer = action.at
            elif isinstance(action, Close):
                assert i == len(actions) - 1, "the close is the last action"
        ended = s.closed
        assert member == (s.grant is not None and not s.closed)
        assert s.media_allowed == (member and "publish-media" in s.grant.privileges)
        if s.closed:
            assert timer is None, "a closed session keeps no timer"
    assert edge.counters["refused"] <= 1


# -- flood limits ------------------------------------------------------------------------------


def test_a_publisher_beyond_its_message_rate_is_closed_rate_limited():
    edge = Edge(limits=EdgeLimits(messages_per_s=10.0, messages_burst=5.0))
    s = joined(edge=edge)
    published = []
    for i in range(5):
        published += s.data_received(line(edgeproto.publish(i, "hi")), T0)
    assert [type(a) for a in published] == [PublishMessage] * 5
    actions = s.data_received(line(edgeproto.publish(5, "one too many")), T0)
    assert actions[-1] == Close(edgeproto.RATE_LIMITED, edgeproto.messages_too_fast(10.0, 5.0))
    assert LeaveChannel(KEY) in actions and s.closed
    assert edge.counters["refused_rate"] == 1


def test_a_publisher_within_its_rate_is_never_limited():
    edge = Edge(limits=EdgeLimits(messages_per_s=10.0, messages_burst=5.0))
    s = joined(edge=edge)
    for i in range(200):  # 200 messages over 20 s: 10 a second
        actions = s.data_received(line(edgeproto.publish(i, "x")), T0 + i * 0.1)
        assert [type(a) for a in actions] == [PublishMessage], i
    assert edge.counters["refused_rate"] == 0


def test_joins_from_one_address_beyond_its_rate_are_refused_before_the_token_is_checked():
    edge = Edge(limits=EdgeLimits(joins_per_source_per_s=1.0, joins_per_source_burst=3.0))
    for _ in range(3):
        s = EdgeSession(edge, "192.0.2.7")
        assert EnterChannel(KEY) in s.data_received(line(edgeproto.join(token(), "c1")), T0)
    s = EdgeSession(edge, "192.0.2.7")
    bogus = s.data_received(line(edgeproto.join("not even a token", "c1")), T0)
    assert bogus == [Close(edgeproto.RATE_LIMITED, edgeproto.joins_too_fast(1.0, 3.0))]
    other = EdgeSession(edge, "198.51.100.1")  # another address has its own allowance
    assert EnterChannel(KEY) in other.data_received(line(edgeproto.join(token(), "c1")), T0)
    later = EdgeSession(edge, "192.0.2.7")
    assert EnterChannel(KEY) in later.data_received(line(edgeproto.join(token(), "c1")),
                                                    T0 + 1)


def test_sessions_per_address_are_counted_open_and_released():
    sources = SourceLimits(EdgeLimits(sessions_per_source=2))
    assert sources.session_opened("a") and sources.session_opened("a")
    assert not sources.session_opened("a")
    assert sources.session_opened("b")
    sources.session_closed("a")
    assert sources.session_opened("a")
    for _ in range(5):
        sources.session_closed("b")
    assert "b" not in sources.open and sources.session_opened("b")


def test_the_join_buckets_kept_are_bounded():
    sources = SourceLimits(EdgeLimits(sources_tracked=100))
    for i in range(1000):
        assert sources.join_allowed(f"10.0.{i // 256}.{i % 256}", T0)
    assert len(sources.joins) == 100


def test_limits_are_read_from_name_value_text_with_clear_errors():
    from relay.edgesession import parse_limits

    lim = parse_limits("joins-per-source-per-s=5, joins_per_source_burst=10,sessions-per-source=3")
    assert (lim.joins_per_source_per_s, lim.joins_per_source_burst,
            lim.sessions_per_source) == (5.0, 10.0, 3)
    assert lim.messages_per_s == EdgeLimits().messages_per_s
    assert parse_limits("") == EdgeLimits()
    for text, problem in (("bogus=1", "NAME one of"), ("sessions-per-source=x", "not a number"),
                          ("messages-per-s=0", "positive"), ("messages-burst=0.5", "at least 1"),
                          ("messages-per-s", "NAME=VALUE")):
        with pytest.raises(ValueError, match=problem):
            parse_limits(text)


# -- history ---------------------------------------------------------------------------------------

def test_a_join_asks_for_history_after_joined_and_requests_are_paced():
    s = EdgeSession(Edge(limits=EdgeLimits(messages_per_s=1, messages_burst=2)))
    actions = s.data_received(line(edgeproto.join(token(), "c1", history=20)), T0)
    assert [type(a) for a in actions] == [SetTimer, EnterChannel, Send, SendHistory]
    assert actions[-1] == SendHistory(KEY, 0, 20)
    assert s.data_received(line(edgeproto.history_request(1, 50, 21)), T0) == \
        [SendHistory(KEY, 1, 50, 21)]
    s.data_received(line(edgeproto.history_request(2, 50)), T0)
    refused = s.data_received(line(edgeproto.history_request(3, 50)), T0)  # burst of 2
    assert s.closed and refused[-1].code == edgeproto.RATE_LIMITED


def test_a_malformed_history_request_is_refused():
    s = joined()
    actions = s.data_received(line({"type": "history", "request": 1, "limit": 1000}), T0)
    assert s.closed and actions[-1] == Close(edgeproto.MALFORMED, edgeproto.BAD_HISTORY)
    s = EdgeSession(Edge())
    actions = s.data_received(line(edgeproto.join(token(), "c1", history=500)), T0)
    assert s.closed and actions == [Close(edgeproto.MALFORMED, edgeproto.BAD_HISTORY)]


def test_a_join_may_ask_to_be_shown_who_is_in_the_channel():
    s = EdgeSession(Edge())
    actions = s.data_received(line(edgeproto.join(token(), "c1", presence=True)), T0)
    assert [type(a) for a in actions] == [SetTimer, EnterChannel, Send, SendPresence]
    assert actions[1].presence and actions[-1] == SendPresence(KEY)
    assert not joined().closed  # without it: no presence
    s = EdgeSession(Edge())
    bad = s.data_received(line({**edgeproto.join(token(), "c1"), "presence": "yes"}), T0)
    assert s.closed and bad == [Close(edgeproto.MALFORMED, edgeproto.BAD_PRESENCE)]


def test_any_joined_user_may_comment_and_a_bad_comment_is_refused():
    s = joined(token(privileges=("join",)))
    assert s.data_received(line(edgeproto.comment("好看!")), T0) == \
        [PostComment(KEY, "u", "好看!")]
    bad = s.data_received(line(edgeproto.comment("x" * 201)), T0)
    assert s.closed and bad[-1] == Close(edgeproto.MALFORMED, edgeproto.BAD_COMMENT)


# -- co-hosting ------------------------------------------------------------------------------------

RELAY = (*ALL, "relay")


def test_a_link_needs_relay_on_both_tokens_one_app_and_zone_and_is_ended_by_unlink():
    s = joined(token(privileges=RELAY))
    assert s.data_received(line(edgeproto.link("c2", token("c2", privileges=RELAY))), T0) \
        == [Link(KEY, ("eu", "app1/c2"), "c2")]
    # linked again: the same link, not a second one
    assert s.data_received(line(edgeproto.link("c2", token("c2", privileges=RELAY))), T0) \
        == [Link(KEY, ("eu", "app1/c2"), "c2")]
    assert s.data_received(line(edgeproto.unlink("c2")), T0) == \
        [Link(KEY, ("eu", "app1/c2"), "c2", unlink=True)]
    assert s.data_received(line(edgeproto.unlink("c2")), T0) == []  # not linked: nothing

    def failed(session, channel, tok) -> str:
        out = sent(session.data_received(line(edgeproto.link(channel, tok)), T0))
        assert [m["state"] for m in out] == ["failed"] and not session.closed
        return out[0]["reason"]
    assert "relay" in failed(s, "c2", token("c2"))  # the other channel's token
    assert "relay" in failed(joined(), "c2", token("c2", privileges=RELAY))  # its own
    assert "zone" in failed(s, "c2", token("c2", zone="global", privileges=RELAY))
    assert failed(s, "c1", token("c1", privileges=RELAY))  # itself
    assert failed(s, "c3", "not a token")


def test_links_are_limited_per_session():
    s = joined(token(privileges=RELAY), edge=Edge(limits=EdgeLimits(links_per_session=2)))
    for ch in ("c2", "c3"):
        assert s.data_received(line(edgeproto.link(ch, token(ch, privileges=RELAY))), T0)
    out = sent(s.data_received(line(edgeproto.link("c4", token("c4", privileges=RELAY))), T0))
    assert out[0]["state"] == "failed" and "links-per-session" in out[0]["reason"]

