"""Hostile client input at the edge: skymesh/edgeproto.py's line decoder and field checks, and
the session state machine (relay/edgesession.py) fed arbitrary bytes, lines and datagrams.

Tokens are not what is fuzzed here (skymesh/token.py has its own tests): the session's `verify`
is replaced by a stand-in that grants tokens of the form `ok:<uid>:<zone>:<privileges>:<ttl>`
and refuses everything else as malformed, so that generated input gets past the join."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from unittest import mock

from fuzzing import fuzz, nasty_text
from hypothesis import event, given
from hypothesis import strategies as st

from relay import edgesession
from relay.edgesession import (
    Close,
    EdgeSession,
    EnterChannel,
    LeaveChannel,
    PublishingChanged,
    PublishMessage,
    Send,
    SetTimer,
)
from skymesh import edgeproto, token
from skymesh.edgeproto import LineDecoder, ProtocolError

T0 = 1_700_000_000
PRIVILEGES = ("join", "publish-media", "publish-messages")
# the codes a session closes with: the refusals, drained, and the rate limits (where the
# protocol has them)
CLOSE_CODES = {*edgeproto.REFUSAL_CODES, edgeproto.DRAINED_ERROR} | {
    getattr(edgeproto, name) for name in ("RATE_LIMITED", "TOO_MANY_SESSIONS")
    if hasattr(edgeproto, name)}
REASONS = {edgeproto.LINE_NOT_JSON, edgeproto.LINE_NOT_OBJECT, edgeproto.LINE_TOO_LONG}


# -- the line decoder ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children,
                                                                        max_size=4),
    max_leaves=12,
)
json_lines = st.builds(lambda v: json.dumps(v).encode() + b"\n", json_values)
stream_bytes = st.lists(st.one_of(json_lines, st.binary(max_size=40),
                                  st.sampled_from([b"\n", b"{}\n", b"[" * 3000 + b"\n",
                                                   b'{"a":1}', b"\xff\xfe\n", b"\r\n",
                                                   b'"\\ud800"\n', b"x" * 70_000])),
                        max_size=10)


def read_all(decoder: LineDecoder, chunks: list[bytes]) -> list[object]:
    """Every object and error, in order, as the session would meet them (feeding on after an
    error, which was consumed; "too long" stays until the line ends)."""
    out: list[object] = []
    for chunk in [*chunks, b""]:
        lines = decoder.feed(chunk)
        for _ in range(len(chunk) + 2):
            try:
                for obj in lines:
                    assert isinstance(obj, dict)
                    out.append(obj)
                break
            except ProtocolError as e:
                assert e.reason in REASONS and str(e) == e.reason
                out.append(e.reason)
                if e.reason == edgeproto.LINE_TOO_LONG:
                    break
                lines = decoder.feed(b"")
    return out


@fuzz()
@given(stream_bytes, st.data())
def test_lines_are_the_same_however_the_stream_is_cut(chunks, data):
    whole = b"".join(chunks)
    at_once = read_all(LineDecoder(max_line_bytes=None), [whole])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    assert read_all(LineDecoder(max_line_bytes=None), pieces) == at_once
    read_all(LineDecoder(), pieces)  # with the limit: only the protocol's errors


@fuzz()
@given(st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"id": st.one_of(st.integers(), st.floats(), st.booleans(), nasty_text),
                  "body": st.one_of(nasty_text, st.integers(), st.none())})))
def test_a_published_message_is_checked(msg):
    if not isinstance(msg, dict):
        return
    try:
        mid, body = edgeproto.published(msg)
    except ProtocolError as e:
        assert e.reason and e.number == edgeproto.MALFORMED
        return
    assert isinstance(mid, int) and 0 <= mid < edgeproto.MAX_MESSAGE_ID
    assert len(body.encode()) <= edgeproto.MAX_MESSAGE_BYTES


# -- the session -------------------------------------------------------------------------------


@dataclasses.dataclass
class Edge:
    region: str = "amsterdam"
    zones: frozenset[str] = frozenset({"eu", "global"})
    secrets: dict = dataclasses.field(default_factory=dict)
    app_keys: dict = dataclasses.field(default_factory=dict)
    drained: bool = False
    counters: Counter = dataclasses.field(default_factory=Counter)
    # the edge's flood limits, where the session has them (relay/edgesession.py)
    limits: object = dataclasses.field(
        default_factory=lambda: getattr(edgesession, "EdgeLimits", lambda: None)())
    sources: object = dataclasses.field(
        default_factory=lambda: getattr(edgesession, "SourceLimits", lambda: None)())


def stand_in_verify(tok, keys, now=None, channel=None, zone=None, need=()):
    """`ok:<uid>:<zone>:<privileges, +-separated>:<ttl>` for app `app`, issued at T0."""
    parts = tok.split(":") if isinstance(tok, str) else []
    if len(parts) != 5 or parts[0] != "ok":
        raise token.TokenError("malformed", "not a stand-in token")
    _, uid, zone_, privileges, ttl = parts
    privileges = frozenset(p for p in privileges.split("+") if p in PRIVILEGES)
    fields = {"app": "app", "channel": channel, "uid": uid, "zone": zone_,
              "privileges": privileges, "issued_at": T0, "expires_at": T0 + int(ttl),
              "jti": "j"}
    grant = token.Grant(**{f.name: fields.get(f.name, "") for f in dataclasses.fields(
        token.Grant)})
    if now is not None and now >= grant.expires_at:
        raise token.TokenError("expired", "expired")
    if not set(need) <= privileges:
        raise token.TokenError("missing-privilege", "missing")
    return grant


stand_in_tokens = st.builds(
    lambda uid, zone, privs, ttl: f"ok:{uid}:{zone}:{'+'.join(privs)}:{ttl}",
    st.sampled_from(["u", "v", ""]), st.sampled_from(["eu", "global", "us"]),
    st.lists(st.sampled_from(PRIVILEGES), max_size=3, unique=True).map(
        lambda p: ["join", *p] if "join" not in p else p) | st.just([]),
    st.sampled_from([1, 40, 3600]))
any_json = json_values
requests = st.one_of(
    st.builds(edgeproto.join, stand_in_tokens | nasty_text, st.sampled_from(["c1", "c" * 70])),
    st.builds(edgeproto.join, stand_in_tokens, nasty_text),
    st.builds(edgeproto.renew, stand_in_tokens | any_json),
    st.builds(edgeproto.publish, st.one_of(st.integers(-2, 2**64), st.sampled_from([0, 1])),
              nasty_text),
    st.fixed_dictionaries({"type": st.sampled_from(["join", "renew", "message", "joined"]) |
                           any_json}, optional={"token": any_json, "channel": any_json,
                                                "id": any_json, "body": any_json}),
    any_json,
)
good_join = st.builds(
    lambda privs, ttl: edgeproto.encode_line(edgeproto.join(
        f"ok:u:eu:{'+'.join(['join', *privs])}:{ttl}", "c1")),
    st.sampled_from([PRIVILEGES[1:], PRIVILEGES[1:], ["publish-media"], []]),
    st.sampled_from([40, 3600]))
good_renew = st.builds(lambda privs: edgeproto.encode_line(edgeproto.renew(
    f"ok:u:eu:{'+'.join(['join', *privs])}:7200")),
    st.sampled_from([PRIVILEGES[1:], ["publish-messages"], []]))
good_message = st.builds(lambda mid, body: edgeproto.encode_line(edgeproto.publish(mid, body)),
                         st.integers(0, 10), st.text(max_size=20))
session_events = st.lists(st.one_of(
    st.tuples(st.just("line"), good_message),
    st.tuples(st.just("line"), good_join),
    st.tuples(st.just("line"), good_renew),
    st.tuples(st.just("line"), requests.map(lambda r: json.dumps(r).encode() + b"\n")),
    st.tuples(st.just("bytes"), stream_bytes.map(b"".join)),
    st.tuples(st.just("datagram"), st.none()),
    st.tuples(st.just("timer"), st.sampled_from([0.0, 1.0, 30.0, 3600.0])),
    st.tuples(st.just("drain"), st.booleans()),
    st.tuples(st.just("end"), st.none()),
), min_size=1, max_size=12)


@fuzz(0.5)
@given(st.one_of(session_events, st.tuples(st.tuples(st.just("line"), good_join),
                                            session_events).map(lambda t: [t[0], *t[1]])))
def test_a_session_takes_anything_and_stays_consistent(events):
    edge = Edge()
    session = EdgeSession(edge)
    now = float(T0)
    entered = left = 0
    closed = False
    timer: float | None = None
    with mock.patch.object(edgesession, "verify", stand_in_verify):
        for what, arg in events:
            if what == "line":
                actions = session.data_received(arg, now)
            elif what == "bytes":
                actions = session.data_received(arg, now)
            elif what == "datagram":
                actions = session.datagram_received()
            elif what == "timer":
                now = max(now, timer if timer is not None else now) + arg
                actions = session.timer_fired(now) if timer is not None else []
            elif what == "drain":
                edge.drained = arg
                actions = []
            else:
                actions = session.connection_terminated()
            if closed:
                assert actions == [], actions  # nothing after the end
            for a in actions:
                assert isinstance(a, Send | Close | SetTimer | EnterChannel | LeaveChannel
                                  | PublishingChanged | PublishMessage), a
                if isinstance(a, Send):
                    assert a.line.endswith(b"\n")
                    assert isinstance(edgeproto.decode_line(a.line[:-1]), dict)
                elif isinstance(a, Close):
                    assert a.code in CLOSE_CODES, a
                    assert a.reason
                    event(f"closed: {a.reason[:30]}")
                elif isinstance(a, SetTimer):
                    timer = a.at
                elif isinstance(a, EnterChannel):
                    entered += 1
                    assert a.key[0] in edge.zones
                    assert len(a.key[1].encode()) <= edgeproto.MAX_CHANNEL_ID
                elif isinstance(a, LeaveChannel):
                    left += 1
                elif isinstance(a, PublishMessage):
                    event("published")
                    assert 0 <= a.mid < edgeproto.MAX_MESSAGE_ID
                    assert len(a.body.encode()) <= edgeproto.MAX_MESSAGE_BYTES
                    assert a.key == session.key
            closed = session.closed
            assert entered <= 1 and left <= entered
            if session.media_allowed:
                assert not session.closed and session.grant is not None
                assert "publish-media" in session.grant.privileges
            if session.closed:
                assert left == entered and not session.media_allowed
