"""Typed errors of the skymesh SDK."""

from __future__ import annotations


class SkymeshError(Exception):
    """Base of every error the SDK raises."""


class ConnectionClosed(SkymeshError):
    """The session's QUIC connection closed (by either side) for a reason other than a token
    refusal. `error_code` and `reason` are those of the QUIC close, when known."""

    def __init__(self, error_code: int = 0, reason: str = "") -> None:
        super().__init__(f"connection closed (error {error_code:#x})"
                         + (f": {reason}" if reason else ""))
        self.error_code = error_code
        self.reason = reason


class TokenRefused(SkymeshError):
    """The edge refused the session's token: `code` is a `skymesh.token.ERROR_CODES` name
    (e.g. "expired"), `number` its QUIC application error code, `reason` the edge's text."""

    def __init__(self, code: str, number: int, reason: str) -> None:
        super().__init__(f"token refused ({code}): {reason}")
        self.code = code
        self.number = number
        self.reason = reason


class RegionDrained(SkymeshError):
    """The edge's region is drained (taken out of service by its operator): connect to the
    edge of another region. Sessions joined before the drain carry on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason or "the edge's region is drained")
        self.reason = reason


class RateLimited(SkymeshError):
    """The edge closed the session for sending faster than it allows (messages, joins from
    one address) or for too many sessions open from one address: back off before retrying.
    `error_code` is `edgeproto.RATE_LIMITED` or `TOO_MANY_SESSIONS`, `reason` the limit."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason or "rate limited by the edge")
        self.error_code = error_code
        self.reason = reason


class EdgeUnavailable(SkymeshError):
    """No usable client edge for the region asked for: unknown region, no relay with an edge
    connected, or the region is drained."""


class ControllerUnavailable(SkymeshError):
    """The controller asked for an edge could not be reached or refused the question."""
