"""Which controller replica leads, by etcd's election recipe, decided without I/O.

Each replica campaigns by writing a key of its own under the mesh's election prefix, bound to
a lease it keeps alive; the key with the lowest create revision leads. A replica acts as the
leader only while its key is that one and its lease cannot have expired yet: it counts the
lease from the moment it asked for the last renewal (not from the answer), so it stops before
etcd could have let the key go, and every write it makes is fenced by the key's create
revision besides (`controller/etcd.created_at`), so a leader that has not noticed it was
deposed cannot overwrite anything. The lease is renewed at a third of its TTL.

The shell feeds a `Campaign` the keys it reads or watches and the outcome of each renewal,
with the time; the campaign says when to renew, whether to campaign again (the lease was
lost) and whether this replica leads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_TTL_S = 2  # a leader that dies is replaced within this (plus a round): under 5 s
MAX_TTL_S = 5


@dataclass(frozen=True)
class Candidate:
    """A replica's election key as read: who, where its clients reach it, since when."""

    replica: str
    address: str
    key: bytes
    create_revision: int


def leader_of(candidates: Iterable[Candidate]) -> Candidate | None:
    """The candidate with the lowest create revision (None without any)."""
    return min(candidates, key=lambda c: c.create_revision, default=None)


@dataclass
class Campaign:
    """One replica's side of the election."""

    replica: str
    ttl_s: float = DEFAULT_TTL_S
    lease: int = 0  # 0: no lease (campaign)
    key: bytes = b""
    create_revision: int = 0  # of this replica's key, once written
    renew_asked_at: float | None = None  # when the last renewal that succeeded was asked
    candidates: dict[bytes, Candidate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.ttl_s <= MAX_TTL_S:
            raise ValueError(f"election TTL {self.ttl_s} s: between 0 and {MAX_TTL_S} s")

    # -- what the shell learns ---------------------------------------------------------------

    def campaigned(self, lease: int, key: bytes, create_revision: int, asked_at: float) -> None:
        """The replica's key was written, with a lease granted at `asked_at` or later."""
        self.lease, self.key, self.create_revision = lease, key, create_revision
        self.renew_asked_at = asked_at

    def renewed(self, asked_at: float, ttl_left: float) -> None:
        """A renewal asked at `asked_at` came back with `ttl_left` (0: the lease had expired:
        the key is gone, campaign again)."""
        if ttl_left <= 0:
            self.lost()
        else:
            self.renew_asked_at = asked_at

    def lost(self) -> None:
        """The lease is gone (expired, or etcd said so): campaign again."""
        self.lease, self.key, self.create_revision = 0, b"", 0
        self.renew_asked_at = None

    def seen(self, candidates: Iterable[Candidate]) -> None:
        """The election keys as read now (the whole prefix)."""
        self.candidates = {c.key: c for c in candidates}
        if self.key and self.key not in self.candidates:
            self.lost()  # our key is gone (expired, deleted): whatever we believed

    def put(self, c: Candidate) -> None:
        """A key was written under the prefix (a watch's event)."""
        self.candidates[c.key] = c

    def deleted(self, key: bytes) -> None:
        self.candidates.pop(key, None)
        if key == self.key:
            self.lost()

    # -- what the replica does ----------------------------------------------------------------

    def must_campaign(self) -> bool:
        return not self.lease

    def renew_due(self, now: float) -> bool:
        return bool(self.lease) and self.renew_asked_at is not None and \
            now - self.renew_asked_at >= self.ttl_s / 3

    def alive(self, now: float) -> bool:
        """Whether our lease is certainly still held: asked for within the TTL."""
        return bool(self.lease) and self.renew_asked_at is not None and \
            now - self.renew_asked_at < self.ttl_s

    def leader(self) -> Candidate | None:
        return leader_of(self.candidates.values())

    def leads(self, now: float) -> bool:
        """Whether this replica may act as the leader now."""
        top = self.leader()
        return self.alive(now) and top is not None and top.key == self.key and \
            top.create_revision == self.create_revision
