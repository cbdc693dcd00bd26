"""The client-edge protocol: what an SDK session and the edge relay say to each other. Pure: the
one definition both sides import, so that neither can drift from the other.

The client opens a QUIC connection to the edge with ALPN ``skymesh/1`` and DATAGRAM frames
(RFC 9221) enabled. Media are QUIC datagrams, unreliable and unordered (the
edge's to the client carry a kind byte first, see Comments): the edge accepts up to
`MAX_MEDIA_BYTES` each (larger ones are dropped and counted), the SDK sends up to
`MAX_MEDIA_PAYLOAD` (what fits one QUIC packet of aioquic's default 1200-byte size). Everything
else travels on the client's first bidirectional stream, one JSON object per line
(`encode_line`; other streams are ignored):

- client -> edge: ``{"type":"join","token":T,"channel":C}`` first (with ``"resume":{S:K}``
  when the client moves from another edge, ``"publisher":P``, see below,
  ``"history":N`` for the channel's last N messages, see History, and ``"presence":true``
  to be shown who is in the channel, see Presence), then
  ``{"type":"message","id":N,"body":B}`` (needs ``publish-messages``; N an integer in
  0..2**63-1, B at most `MAX_MESSAGE_BYTES` of UTF-8), ``{"type":"renew","token":T}`` (a
  fresh token for the same app, channel, user and zone), ``{"type":"resume","after":{S:K}}``
  and ``{"type":"history","request":Q,"limit":N,"before":H}`` (an older page);
- edge -> client: ``{"type":"joined","uid":U,"channel":C,"region":R,"zone":Z,
  "privileges":[...],"expires_at":E}``, ``{"type":"message","from":U,"id":N,"body":B,
  "stream":S,"seq":K}`` for each message of another publisher,
  ``{"type":"renewed","expires_at":E,"privileges":[...]}``,
  ``{"type":"token-expiring","expires_at":E}`` `EXPIRY_NOTICE_S` before the token runs out
  (at most half its lifetime before), ``{"type":"moving","reason":R}`` when the edge's
  region is drained (the session carries on here, but should move to another edge), and
  ``{"type":"settled","upto":N}`` once every message the session published up to id N has
  reached every relay that subscribed when it was sent (or was given up on), and
  ``{"type":"history","request":Q,"messages":[...],"last":L,"more":M}`` (a page of history).

Presence. A session that joined with "presence" gets, after "joined" and whenever it changes
(at most every 0.2 s), ``{"type":"presence","count":N,"regions":{R:n},"members":[U...],
"joined":[[U,R]...],"left":[[U,R]...]}``: the distinct users at each edge delivering the
channel, summed (`count`), per region, and while every edge has at most 50, who they are
and who joined and left which region since the last (relay/presence.py).

Receipts. ``{"type":"read","stream":S,"id":N}`` says the client read the messages of S (as
they came, "relay:P") up to P's id N; paced as messages are. In a small channel (50 users at
most at every edge) every member gets ``{"type":"receipt","from":U,"publisher":P,"id":N}``;
in a large one the reads are counted, and the session publishing as P gets, at most every
second, ``{"type":"reads","counts":[[N,n],...]}``: n users read at least up to its id N,
highest N first (relay/receipts.py).

Comments (danmaku). ``{"type":"comment","body":B}`` (B at most `MAX_COMMENT_BYTES`) is a
viewer's comment: best-effort, thinned. A user commenting faster than the edge allows gets
``{"type":"refused","what":"comment","reason":R}`` and stays joined. Every 0.2 s a session
is shown a fair sample of the channel's comments (every user's first before anyone's second)
up to the edge's rate, 20 a second by default (relay/danmaku.py), in QUIC datagrams, not on
the stream: a comment lost on the way is not sent again, and reliable messages never wait
behind comments. Each datagram from the edge starts with one byte saying what it holds:
`MEDIA_DATAGRAM` (a publisher's media datagram follows, as it sent it) or `COMMENTS_DATAGRAM`
(a JSON batch ``[[U,B],...]``, `encode_batches`). A client skips a kind it does not know.

Co-hosting. A session whose token grants "relay" sends ``{"type":"link","channel":B,
"token":T}`` with a token for channel B (same app and zone) that grants "relay" too; the edge
answers ``{"type":"link","channel":B,"state":S}`` as the link goes, S one of "linking",
"linked" (the controller has told the edge where B's edges are), "failed" (with "reason") and
"unlinked" (``{"type":"unlink","channel":B}``, or the session left). While linked, the edge
relays each channel's media and messages into the other, inside the network: what it relays
goes under a stream of its own ("relay:link-..."), which is never relayed again.

History. The edge keeps the recent messages of each channel it delivers (bounded by count and
age; relay/history.py), numbered H = 1, 2, 3, ... in the order they were delivered there. A
join's "history": N (1 to `MAX_HISTORY_PAGE`) asks for the last N: they come after "joined"
as request 0. A "history" request Q (a positive integer the client picks) asks for N more,
those numbered below H ("before", absent: the newest). A page is one or more lines of the
request's messages, oldest first, each ``{"from":U,"id":N,"body":B,"stream":S,"seq":K,
"at":T,"n":H}`` (T when it was delivered there, Unix seconds); its last line says "last":
true and whether older messages are kept ("more"). History requests are paced as the
session's messages are.

Resuming. Each publisher session's messages form a stream, S naming it across the network
(`stream_id`: the relay it publishes through and the session), numbered K = 1, 2, 3, ... in
the order every subscriber receives them. A client moving to another edge (its edge died, or
said "moving") joins there with the last K it delivered of each stream; the new edge asks
each stream's relay for the messages after K, which it keeps for a while (`skymesh` relays:
the last 1024, at most 30 s), and hands them to the session as ordinary "message" lines (so a
client may see some twice, and some out of order with live ones: it orders by K and drops
repeats). "resume" asks again for streams whose gap stays open. A message delivered before
the edge could number it (the first ones of a channel, while the relays learn who
subscribes) has a "stream" but no "seq".

Publishing across a move. P (16 to 32 lowercase hex digits, chosen by the client for its
session, `PUBLISHER`) names the session's stream after the relay's name: the same P at
another edge is the same publisher moved, its ids going on. A publisher keeps what is not
"settled" and sends it again, with the same ids, at the edge it moves to; a subscriber takes
a message of P that comes through another relay than before only if its id is past the last
it delivered of P. An edge where P is in use already gives the session a name of its own.

The edge closes the QUIC connection to refuse: with the `skymesh.token.ERROR_CODES` number of
the refusal (a token the edge does not accept, a request that breaks this protocol:
"malformed") as the application error code and its reason as the reason phrase; with
`DRAINED_ERROR` when its region is drained (the client should connect to another region).
With `RATE_LIMITED` when the
client publishes messages faster than the edge allows, or its address joins too often, and with
`TOO_MANY_SESSIONS` when its address has too many sessions open (the reason says the limit).
The token's expiry without a renewal closes it as "expired". A line the edge cannot read, or a
partial line longer than `MAX_LINE_BYTES`, is "malformed".

A channel is known to the relays as (zone, "app/channel"), at most `MAX_CHANNEL_ID` bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence

from skymesh.token import ERROR_CODES

ALPN = "skymesh/1"
MAX_DATAGRAM_FRAME_SIZE = 65536  # the DATAGRAM frame size both sides advertise

# -- limits ------------------------------------------------------------------------------------

MAX_MEDIA_BYTES = 1150  # the largest media datagram the edge accepts (larger: dropped, counted)
MAX_MEDIA_PAYLOAD = 1100  # the largest the SDK sends: one QUIC packet of aioquic's 1200 bytes
MAX_MESSAGE_BYTES = 900  # UTF-8 bytes of a message body: one relay datagram, worst case
MAX_MESSAGE_ID = 2**63  # message ids are 0 <= id < this
MAX_LINE_BYTES = 64 * 1024  # a partial line longer than this is malformed
MAX_CHANNEL_ID = 64  # bytes of "app/channel" (the relay datagram header's limit)
EXPIRY_NOTICE_S = 30.0  # "token-expiring" this long before expiry (at most half the TTL)

# -- message kinds -----------------------------------------------------------------------------

JOIN = "join"  # client -> edge, first
RENEW = "renew"  # client -> edge
MESSAGE = "message"  # both ways: published (client -> edge), delivered (edge -> client)
JOINED = "joined"  # edge -> client
RENEWED = "renewed"  # edge -> client
TOKEN_EXPIRING = "token-expiring"  # edge -> client
RESUME = "resume"  # client -> edge
MOVING = "moving"  # edge -> client
SETTLED = "settled"  # edge -> client
HISTORY = "history"  # both ways: a page asked (client -> edge), a page (edge -> client)
PRESENCE = "presence"  # edge -> client: who is in the channel
READ = "read"  # client -> edge: a publisher's messages read, up to an id
RECEIPT = "receipt"  # edge -> client: a user read a publisher's messages (small channels)
READS = "reads"  # edge -> client: how many read each of its messages (large channels)
COMMENT = "comment"  # client -> edge: a viewer's comment (danmaku), best-effort
REFUSED = "refused"  # edge -> client: a request refused without ending the session
LINK = "link"  # client -> edge: link to another channel; edge -> client: the link's state
UNLINK = "unlink"  # client -> edge
LINK_STATES = ("linking", "linked", "failed", "unlinked")
MAX_COMMENT_BYTES = 200  # UTF-8 bytes of a comment
MAX_BATCH_BYTES = 1000  # a batch of comments: one datagram's payload, between edges or to a client
MEDIA_DATAGRAM = b"\x00"  # edge -> client datagrams start with one of these: media follow
COMMENTS_DATAGRAM = b"\x01"  # or a batch of comments (`encode_batches`)

MAX_HISTORY_PAGE = 100  # messages one history request may ask for
HISTORY_LINE_BYTES = 16 * 1024  # a page's lines are cut at about this size
MAX_HISTORY_REQUEST = 2**31  # request numbers are 1 <= Q < this (0: the join's)

MAX_RESUME_STREAMS = 256  # streams one join or resume may name
MAX_STREAM_ID = 200  # bytes of a stream's name


def join(token: str, channel: str, resume: dict[str, int] | None = None,
         publisher: str | None = None, history: int = 0, presence: bool = False) -> dict:
    msg: dict = {"type": JOIN, "token": token, "channel": channel}
    if resume:
        msg["resume"] = resume
    if publisher:
        msg["publisher"] = publisher
    if history:
        msg["history"] = history
    if presence:
        msg["presence"] = True
    return msg


def history_request(request: int, limit: int, before: int | None = None) -> dict:
    msg: dict = {"type": HISTORY, "request": request, "limit": limit}
    if before is not None:
        msg["before"] = before
    return msg


def history_asked(msg: dict) -> tuple[int, int, int | None]:
    """(request, limit, before) of a client's "history"; ProtocolError when malformed."""
    request, limit, before = msg.get("request"), msg.get("limit"), msg.get("before")
    if not _count(request, 1, MAX_HISTORY_REQUEST - 1) or \
            not _count(limit, 1, MAX_HISTORY_PAGE) or \
            (before is not None and not _count(before, 1, MAX_MESSAGE_ID - 1)):
        raise ProtocolError(BAD_HISTORY)
    return request, limit, before


def join_history(value: object) -> int:
    """A join's "history" (0 when absent); ProtocolError when malformed."""
    if value is None:
        return 0
    if not _count(value, 0, MAX_HISTORY_PAGE):
        raise ProtocolError(BAD_HISTORY)
    return value


def join_presence(value: object) -> bool:
    """A join's "presence" (False when absent); ProtocolError when not a boolean."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(BAD_PRESENCE)
    return value


def read(stream: str, mid: int) -> dict:
    """The client read the messages of `stream` (as delivered: "relay:P") up to id `mid`."""
    return {"type": READ, "stream": stream, "id": mid}


def read_asked(msg: dict) -> tuple[str, int]:
    """(publisher P, id) of a client's "read"; ProtocolError when malformed."""
    stream, mid = msg.get("stream"), msg.get("id")
    if not isinstance(stream, str) or len(stream.encode()) > MAX_STREAM_ID \
            or not _count(mid, 0, MAX_MESSAGE_ID - 1):
        raise ProtocolError(BAD_READ)
    try:
        _, of = parse_stream_id(stream)
    except ProtocolError:
        raise ProtocolError(BAD_READ) from None
    return of, mid


def link(channel: str, token: str) -> dict:
    return {"type": LINK, "channel": channel, "token": token}


def unlink(channel: str) -> dict:
    return {"type": UNLINK, "channel": channel}


def link_asked(msg: dict) -> tuple[str, object]:
    """(channel, token) of a client's "link", or the channel (token None) of an "unlink";
    ProtocolError when malformed."""
    channel = msg.get("channel")
    if not isinstance(channel, str) or not channel or len(channel.encode()) > MAX_CHANNEL_ID:
        raise ProtocolError(BAD_LINK)
    return channel, msg.get("token")


def link_state(channel: str, state: str, reason: str = "") -> dict:
    msg = {"type": LINK, "channel": channel, "state": state}
    if reason:
        msg["reason"] = reason
    return msg


def comment(body: str) -> dict:
    return {"type": COMMENT, "body": body}


def commented(msg: dict) -> str:
    """The body of a client's "comment"; ProtocolError when it is not text of at most
    MAX_COMMENT_BYTES."""
    body = msg.get("body")
    if not isinstance(body, str):
        raise ProtocolError(BAD_COMMENT)
    if _utf8_size(body) > MAX_COMMENT_BYTES:
        raise ProtocolError(BAD_COMMENT)
    return body


def refused(what: str, reason: str) -> dict:
    return {"type": REFUSED, "what": what, "reason": reason}


def comments_too_fast(per_s: float, burst: float) -> str:
    return f"more than {per_s:g} comments a second (bursts of {burst:g}) from one user"


def receipt(uid: str, of: str, mid: int) -> dict:
    return {"type": RECEIPT, "from": uid, "publisher": of, "id": mid}


def reads(counts: list[tuple[int, int]]) -> dict:
    return {"type": READS, "counts": [list(x) for x in counts]}


def presence(view: dict) -> dict:
    """Who is in the channel, as the edge tells a session that asked (relay/presence.py)."""
    return {"type": PRESENCE, **view}


def _count(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def kept(uid: str, mid: int, body: str, stream: str | None, seq: int | None, at: float,
         n: int) -> dict:
    """One message of a history page."""
    msg = {"from": uid, "id": mid, "body": body, "at": round(at, 3), "n": n}
    if stream is not None:
        msg["stream"] = stream
        if seq is not None:
            msg["seq"] = seq
    return msg


def history_lines(request: int, messages: list[dict], more: bool) -> list[bytes]:
    """A page as the lines the edge sends: cut at about `HISTORY_LINE_BYTES`, the last
    saying so and whether older messages are kept."""
    lines: list[bytes] = []
    part: list[dict] = []
    size = 0
    for m in messages:
        encoded = len(encode_line(m))
        if part and size + encoded > HISTORY_LINE_BYTES:
            lines.append(encode_line({"type": HISTORY, "request": request,
                                      "messages": part, "last": False}))
            part, size = [], 0
        part.append(m)
        size += encoded
    lines.append(encode_line({"type": HISTORY, "request": request, "messages": part,
                              "last": True, "more": more}))
    return lines


def settled(upto: int) -> dict:
    return {"type": SETTLED, "upto": upto}


def resume(after: dict[str, int]) -> dict:
    return {"type": RESUME, "after": after}


def moving(reason: str) -> dict:
    return {"type": MOVING, "reason": reason}


def stream_id(origin: str, stream: str) -> str:
    """The network-wide name of a publisher's stream: its relay's name and the session's."""
    return f"{origin}:{stream}"


def parse_stream_id(name: str) -> tuple[str, str]:
    """(relay, session stream) of a `stream_id`; ProtocolError when it is not one."""
    origin, sep, stream = name.rpartition(":")
    if not sep or not origin or not stream:
        raise ProtocolError(BAD_RESUME)
    return origin, stream


def renew(token: str) -> dict:
    return {"type": RENEW, "token": token}


def publish(mid: int, body: str) -> dict:
    """A message the client publishes to its channel."""
    return {"type": MESSAGE, "id": mid, "body": body}


def joined(uid: str, channel: str, region: str, zone: str, privileges: list[str],
           expires_at: int) -> dict:
    return {"type": JOINED, "uid": uid, "channel": channel, "region": region, "zone": zone,
            "privileges": privileges, "expires_at": expires_at}


def renewed(expires_at: int, privileges: list[str]) -> dict:
    return {"type": RENEWED, "expires_at": expires_at, "privileges": privileges}


def token_expiring(expires_at: int) -> dict:
    return {"type": TOKEN_EXPIRING, "expires_at": expires_at}


def deliver(uid: str, mid: int, body: str, stream: str | None = None,
            seq: int | None = None) -> dict:
    """Another publisher's message, as the edge hands it to a client: with its stream and
    place in it when the edge knows them."""
    msg = {"type": MESSAGE, "from": uid, "id": mid, "body": body}
    if stream is not None:
        msg["stream"] = stream
        if seq is not None:
            msg["seq"] = seq
    return msg


# -- close codes -------------------------------------------------------------------------------

DRAINED_ERROR = 0x201  # the edge's region is drained: the client should connect elsewhere
RATE_LIMITED = 0x202  # the client sent faster than the edge allows (messages, joins)
TOO_MANY_SESSIONS = 0x203  # too many sessions open at once from the client's address
MALFORMED = ERROR_CODES["malformed"]  # a request that breaks this protocol
REFUSAL_CODES = {number: code for code, number in ERROR_CODES.items()}  # number -> token code
# every close code the edge ends a session with, by a name for counters and metrics
CLOSE_NAMES = {**REFUSAL_CODES, DRAINED_ERROR: "drained", RATE_LIMITED: "rate-limited",
               TOO_MANY_SESSIONS: "too-many-sessions"}


# -- refusal reasons ---------------------------------------------------------------------------

LINE_NOT_JSON = "a line is not JSON"
LINE_NOT_OBJECT = "a line is not a JSON object"
LINE_TOO_LONG = "line too long"
JOIN_FIRST = "the first message must be a join"
JOIN_NEEDS_CHANNEL = "join needs a channel"
BAD_MESSAGE = "a message needs an integer id and a string body"
MESSAGE_TOO_LONG = f"a message body is at most {MAX_MESSAGE_BYTES} bytes of UTF-8"
MESSAGE_NOT_TEXT = "a message body must be Unicode text (no lone surrogates)"


def messages_too_fast(per_s: float, burst: float) -> str:
    return (f"more than {per_s:g} messages a second (bursts of {burst:g}) from one session: "
            "slow down")


def joins_too_fast(per_s: float, burst: float) -> str:
    return (f"more than {per_s:g} joins a second (bursts of {burst:g}) from one address: "
            "back off and retry")


def too_many_sessions(limit: int) -> str:
    return f"more than {limit} sessions open at once from one address"
# (MAX_CHANNEL_ID itself passes; the text has always said one less)
CHANNEL_ID_TOO_LONG = f"app and channel together must be at most {MAX_CHANNEL_ID - 1} bytes"
RENEWAL_MISMATCH = "a renewal must be for the same app, user and zone as the session"
EXPIRED = "the token expired and was not renewed"
BAD_PUBLISHER = "publisher must be 16 to 32 lowercase hex digits"
BAD_RESUME = (f"resume needs an object of at most {MAX_RESUME_STREAMS} streams, each "
              "\"relay:stream\" to the last sequence number delivered")
MOVING_DRAINED = "the edge's region is drained: move to another edge"
BAD_PRESENCE = "a join's presence is true or false"
BAD_LINK = "link and unlink need the other channel's name (and link its token)"
BAD_COMMENT = f"a comment needs a string body of at most {MAX_COMMENT_BYTES} bytes of UTF-8"
BAD_READ = "read needs the messages' \"stream\" (relay:publisher) and an integer \"id\""
BAD_HISTORY = (f"history needs a request number from 1 (0 in a join), a limit of 1 to "
               f"{MAX_HISTORY_PAGE} and, if given, \"before\" a positive message number")


def unexpected_kind(kind: object) -> str:
    return f"unexpected message type {kind!r}"


def drained(region: str) -> str:
    return f"region {region!r} is drained: connect to another region"


def wrong_zone(zone: str, region: str, zones: Iterable[str]) -> str:
    return (f"the token is for zone {zone!r}; edge region {region!r} serves "
            f"{', '.join(sorted(zones)) or 'no zone'}")


def missing_privilege(privilege: str) -> str:
    return f"the token does not grant {privilege}"


class ProtocolError(ValueError):
    """A line or request that breaks this protocol; the edge refuses it as "malformed" with
    `reason` (also the exception's text)."""

    number = MALFORMED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason



# -- comment batches ---------------------------------------------------------------------------

def encode_batches(comments: Sequence[tuple[str, str]]) -> list[bytes]:
    """Comments (uid, body) as JSON batches ``[[U,B],...]`` of at most MAX_BATCH_BYTES each:
    what one edge sends another (a fabric datagram) and what it shows a session (after the
    COMMENTS_DATAGRAM byte)."""
    out: list[bytes] = []
    part: list[list[str]] = []
    size = 2
    for uid, body in comments:
        item = [uid, body]
        n = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        if part and size + n > MAX_BATCH_BYTES:
            out.append(json.dumps(part, separators=(",", ":")).encode())
            part, size = [], 2
        part.append(item)
        size += n
    if part:
        out.append(json.dumps(part, separators=(",", ":")).encode())
    return out


def decode_batch(payload: bytes) -> list[tuple[str, str]]:
    """A batch's comments; what is not one is skipped."""
    try:
        items = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [(x[0], x[1]) for x in items
            if isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)
            and isinstance(x[1], str) and len(x[1].encode("utf-8", "replace"))
            <= MAX_COMMENT_BYTES]


def comments_datagrams(comments: Sequence[tuple[str, str]]) -> list[bytes]:
    """The datagrams that show a session these comments."""
    return [COMMENTS_DATAGRAM + b for b in encode_batches(comments)]

# -- lines -------------------------------------------------------------------------------------

def encode_line(obj: dict) -> bytes:
    """One line of the stream: compact JSON and a newline."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes) -> dict:
    """The JSON object of one line (without its newline); ProtocolError otherwise."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        raise ProtocolError(LINE_NOT_JSON) from None
    if not isinstance(obj, dict):
        raise ProtocolError(LINE_NOT_OBJECT)
    return obj


class LineDecoder:
    """Splits a stream's bytes into lines and reads each (`decode_line`). `feed` yields the
    objects of the complete lines as it reads them and raises ProtocolError at the first bad
    one, which it has consumed: feeding on (even b"") carries on after it. A partial line
    longer than `max_line_bytes` (None: no limit) raises ProtocolError("line too long") after
    the complete lines before it, and again at every feed while it lasts."""

    def __init__(self, max_line_bytes: int | None = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = b""
        self._start = 0  # where the unread part of _buffer starts

    def feed(self, data: bytes) -> Iterator[dict]:
        # lines are cut at an offset rather than by copying the rest each time: many short
        # lines in one chunk cost linear time, not quadratic
        self._buffer = self._buffer[self._start:] + bytes(data)
        self._start = 0
        while (end := self._buffer.find(b"\n", self._start)) >= 0:
            line = self._buffer[self._start:end]
            self._start = end + 1  # consumed before it is read: an error does not repeat
            yield decode_line(line)
        if self.max_line_bytes is not None \
                and len(self._buffer) - self._start > self.max_line_bytes:
            raise ProtocolError(LINE_TOO_LONG)


# -- fields ------------------------------------------------------------------------------------

def check_body(body: str) -> None:
    """ProtocolError when a message body is longer than `MAX_MESSAGE_BYTES` of UTF-8, or has
    no UTF-8 at all (JSON's escapes can spell a lone surrogate)."""
    if _utf8_size(body) > MAX_MESSAGE_BYTES:
        raise ProtocolError(MESSAGE_TOO_LONG)


def _utf8_size(body: str) -> int:
    """Bytes of `body` in UTF-8; ProtocolError when it has none (a lone surrogate)."""
    try:
        return len(body.encode())
    except UnicodeEncodeError:
        raise ProtocolError(MESSAGE_NOT_TEXT) from None


def published(msg: dict) -> tuple[int, str]:
    """(id, body) of a client's "message"; ProtocolError when either is bad."""
    mid, body = msg.get("id"), msg.get("body")
    if not isinstance(mid, int) or isinstance(mid, bool) or not 0 <= mid < MAX_MESSAGE_ID \
            or not isinstance(body, str):
        raise ProtocolError(BAD_MESSAGE)
    check_body(body)
    return mid, body


def resume_points(value: object) -> dict[str, int]:
    """The streams and last delivered sequence numbers of a join's "resume" or a resume's
    "after" (None: none); ProtocolError when malformed."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_RESUME_STREAMS:
        raise ProtocolError(BAD_RESUME)
    for name, seq in value.items():
        if not isinstance(name, str) or len(name.encode()) > MAX_STREAM_ID \
                or not isinstance(seq, int) or isinstance(seq, bool) \
                or not 0 <= seq < MAX_MESSAGE_ID:
            raise ProtocolError(BAD_RESUME)
        parse_stream_id(name)
    return dict(value)


PUBLISHER = re.compile(r"[0-9a-f]{16,32}\Z")


def publisher_of(value: object) -> str:
    """A join's "publisher" ("" when absent); ProtocolError when malformed."""
    if value is None:
        return ""
    if not isinstance(value, str) or not PUBLISHER.match(value):
        raise ProtocolError(BAD_PUBLISHER)
    return value


def channel_id(app: str, channel: str) -> str:
    """The channel's name among the relays, "app/channel"; ProtocolError when too long."""
    name = f"{app}/{channel}"
    if len(name.encode()) > MAX_CHANNEL_ID:
        raise ProtocolError(CHANNEL_ID_TOO_LONG)
    return name
