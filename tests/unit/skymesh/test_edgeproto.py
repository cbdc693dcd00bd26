"""The client-edge protocol's one definition: the exact lines of each kind, the line codec, the
field checks, limits and close codes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skymesh import edgeproto
from skymesh.edgeproto import LineDecoder, ProtocolError, decode_line, encode_line
from skymesh.token import ERROR_CODES

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
OBJECTS = st.dictionaries(st.text(), JSON, max_size=6)


def test_each_kind_is_one_exact_line():
    assert encode_line(edgeproto.join("T", "C")) == b'{"type":"join","token":"T","channel":"C"}\n'
    assert encode_line(edgeproto.renew("T")) == b'{"type":"renew","token":"T"}\n'
    assert encode_line(edgeproto.publish(7, "hi")) == b'{"type":"message","id":7,"body":"hi"}\n'
    assert encode_line(edgeproto.joined("u", "c", "ams", "eu", ["join"], 9)) == (
        b'{"type":"joined","uid":"u","channel":"c","region":"ams","zone":"eu",'
        b'"privileges":["join"],"expires_at":9}\n')
    assert encode_line(edgeproto.renewed(9, ["join", "publish-media"])) == (
        b'{"type":"renewed","expires_at":9,"privileges":["join","publish-media"]}\n')
    assert encode_line(edgeproto.token_expiring(9)) == (
        b'{"type":"token-expiring","expires_at":9}\n')
    assert encode_line(edgeproto.deliver("u", 7, "hé")) == (
        b'{"type":"message","from":"u","id":7,"body":"h\\u00e9"}\n')


def test_limits_and_names():
    assert edgeproto.ALPN == "skymesh/1"
    assert (edgeproto.MAX_MEDIA_BYTES, edgeproto.MAX_MEDIA_PAYLOAD) == (1150, 1100)
    assert edgeproto.MAX_MEDIA_PAYLOAD <= edgeproto.MAX_MEDIA_BYTES  # what the SDK sends passes
    assert edgeproto.MAX_MESSAGE_BYTES == 900
    assert edgeproto.MAX_LINE_BYTES == 64 * 1024
    assert edgeproto.MAX_CHANNEL_ID == 64
    assert edgeproto.EXPIRY_NOTICE_S == 30
    assert edgeproto.MAX_DATAGRAM_FRAME_SIZE >= edgeproto.MAX_MEDIA_BYTES


def test_close_codes_are_distinct_and_name_their_refusals():
    assert edgeproto.DRAINED_ERROR == 0x201
    assert edgeproto.DRAINED_ERROR not in edgeproto.REFUSAL_CODES
    assert edgeproto.MALFORMED == ERROR_CODES["malformed"] == 0x101
    assert {edgeproto.REFUSAL_CODES[n]: n for n in edgeproto.REFUSAL_CODES} == ERROR_CODES
    e = ProtocolError("why")
    assert isinstance(e, ValueError) and str(e) == e.reason == "why"
    assert e.number == edgeproto.MALFORMED


@given(st.lists(OBJECTS, max_size=5), st.data())
def test_lines_round_trip_whatever_the_chunks(objects, data):
    wire = b"".join(encode_line(o) for o in objects)
    assert wire.count(b"\n") == len(objects)  # JSON escapes newlines inside strings
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    decoder = LineDecoder()
    got = [obj for chunk in chunks for obj in decoder.feed(chunk)]
    assert got == objects


def test_encoding_is_compact_json_and_a_newline():
    obj = {"type": "x", "list": [1, 2], "nested": {"a": None}}
    assert encode_line(obj) == (json.dumps(obj, separators=(",", ":")) + "\n").encode()


@pytest.mark.parametrize("line, reason", [
    (b"not json", edgeproto.LINE_NOT_JSON),
    (b"\xff\xfe{", edgeproto.LINE_NOT_JSON),
    (b"[" * 100_000, edgeproto.LINE_NOT_JSON),  # too deep to read is still just not JSON
    (b"", edgeproto.LINE_NOT_JSON),
    (b"[1, 2]", edgeproto.LINE_NOT_OBJECT),
    (b'"join"', edgeproto.LINE_NOT_OBJECT),
])
def test_a_bad_line_is_a_protocol_error(line, reason):
    with pytest.raises(ProtocolError) as info:
        decode_line(line)
    assert info.value.reason == reason


def test_the_decoder_carries_on_after_a_bad_line():
    decoder = LineDecoder()
    lines = decoder.feed(b'{"a":1}\nnope\n{"b":2}\n{"c"')
    assert next(lines) == {"a": 1}
    with pytest.raises(ProtocolError, match="not JSON"):
        next(lines)
    assert list(decoder.feed(b"")) == [{"b": 2}]
    assert list(decoder.feed(b":3}\n")) == [{"c": 3}]


def test_a_partial_line_too_long_is_refused_after_the_complete_lines():
    decoder = LineDecoder(max_line_bytes=10)
    got = []
    with pytest.raises(ProtocolError) as info:
        for obj in decoder.feed(b'{"a":1}\n' + b"x" * 11):
            got.append(obj)
    assert got == [{"a": 1}] and info.value.reason == edgeproto.LINE_TOO_LONG
    # exactly the limit is not too long; a complete line is never measured
    assert list(LineDecoder(max_line_bytes=10).feed(b"y" * 10)) == []
    assert list(LineDecoder(max_line_bytes=10).feed(b'{"k":"' + b"z" * 20 + b'"}\n')) == [
        {"k": "z" * 20}]
    assert list(LineDecoder(max_line_bytes=None).feed(b"w" * 100_000)) == []
    with pytest.raises(ProtocolError, match="line too long"):
        list(LineDecoder().feed(b"v" * (edgeproto.MAX_LINE_BYTES + 1)))


@given(st.lists(st.binary(max_size=80), max_size=8),
       st.sampled_from([None, 16, edgeproto.MAX_LINE_BYTES]))
def test_arbitrary_bytes_raise_nothing_but_the_protocol_error(chunks, limit):
    decoder = LineDecoder(max_line_bytes=limit)
    for chunk in chunks:
        lines = decoder.feed(chunk)
        for _ in range(100):  # each error consumed a line (or is "too long", which stays)
            try:
                for obj in lines:
                    assert isinstance(obj, dict)
                break
            except ProtocolError as e:
                assert e.reason in (edgeproto.LINE_NOT_JSON, edgeproto.LINE_NOT_OBJECT,
                                    edgeproto.LINE_TOO_LONG)
                if e.reason == edgeproto.LINE_TOO_LONG:
                    break
                lines = decoder.feed(b"")


@pytest.mark.parametrize("msg, expected", [
    ({"id": 0, "body": ""}, (0, "")),
    ({"id": 2**63 - 1, "body": "é" * 450}, (2**63 - 1, "é" * 450)),  # 900 bytes of UTF-8
    ({"id": 1, "body": "x" * 900, "extra": True}, (1, "x" * 900)),
])
def test_a_published_message_is_read(msg, expected):
    assert edgeproto.published({"type": "message", **msg}) == expected


@pytest.mark.parametrize("msg, reason", [
    ({"body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": "1", "body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": True, "body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": 1.0, "body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": -1, "body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": 2**63, "body": "b"}, edgeproto.BAD_MESSAGE),
    ({"id": 1}, edgeproto.BAD_MESSAGE),
    ({"id": 1, "body": ["b"]}, edgeproto.BAD_MESSAGE),
    ({"id": 1, "body": "é" * 451}, edgeproto.MESSAGE_TOO_LONG),
    ({"id": 1, "body": "x" * 901}, edgeproto.MESSAGE_TOO_LONG),
    ({"id": 1, "body": "\ud800"}, edgeproto.MESSAGE_NOT_TEXT),
])
def test_a_bad_published_message_is_refused(msg, reason):
    with pytest.raises(ProtocolError) as info:
        edgeproto.published({"type": "message", **msg})
    assert info.value.reason == reason


def test_the_message_body_limit_reads_as_before():
    assert edgeproto.MESSAGE_TOO_LONG == "a message body is at most 900 bytes of UTF-8"
    edgeproto.check_body("x" * 900)
    with pytest.raises(ValueError, match="at most 900 bytes"):
        edgeproto.check_body("x" * 901)


def test_channel_ids_fit_the_relay_header():
    assert edgeproto.channel_id("app1", "c" * 59) == "app1/" + "c" * 59  # 64 bytes
    with pytest.raises(ProtocolError) as info:
        edgeproto.channel_id("app1", "c" * 60)
    assert info.value.reason == edgeproto.CHANNEL_ID_TOO_LONG
    with pytest.raises(ProtocolError):
        edgeproto.channel_id("app1", "é" * 30)  # 65 bytes of UTF-8, 35 characters


def test_reasons_that_name_things():
    assert edgeproto.unexpected_kind("join") == "unexpected message type 'join'"
    assert edgeproto.drained("ams") == "region 'ams' is drained: connect to another region"
    assert edgeproto.wrong_zone("cn", "ams", {"global", "eu"}) == (
        "the token is for zone 'cn'; edge region 'ams' serves eu, global")
    assert edgeproto.wrong_zone("cn", "ams", set()).endswith("serves no zone")
    assert edgeproto.missing_privilege("publish-media") == (
        "the token does not grant publish-media")
