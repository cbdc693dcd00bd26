"""What the fuzz tests (tests/unit/fuzz/) share: how many inputs each tries, and strategies for
hostile input.

In the normal suite each test tries `EXAMPLES` inputs (200), derandomized so that a run is
repeatable and the suite stays fast (the whole directory in well under 30 s). With
SKYMESH_FUZZ_EXAMPLES set (`make fuzz`: 20000) each test tries that many, random ones, every
run different; a failure prints the input and `@reproduce_failure` for it. Hypothesis keeps
what failed in .hypothesis/ (not committed) and tries it first next time."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_SCALED = os.environ.get("SKYMESH_FUZZ_EXAMPLES", "").strip()
EXAMPLES = int(_SCALED) if _SCALED else 200


def fuzz(share: float = 1.0) -> settings:
    """The settings of a fuzz test: EXAMPLES inputs (times `share`, for the slow ones)."""
    return settings(
        max_examples=max(10, int(EXAMPLES * share)),
        deadline=None,
        derandomize=not _SCALED,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


# -- hostile values ------------------------------------------------------------------------------

# floats as a peer would send them to break arithmetic: NaN, infinities, negative zero, huge,
# tiny, and ordinary ones
nasty_floats = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e308, -1e308,
                     5e-324, 1.0, -1.0, 0.5, 1e-9, 2**53 + 1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
# text as a peer would send it: empty, huge, control characters, lone surrogates (which
# protobuf refuses to carry, so callers filter them where the wire cannot hold them)
nasty_text = st.one_of(
    st.sampled_from(["", " ", "\x00", "\n", "é", "\u202e", "-", "..", "global", "eu", "NaN"]),
    st.integers(300, 3000).map(lambda n: "a" * n),  # (a function: short in statistics)
    st.text(max_size=40),
)


def uints(bits: int) -> st.SearchStrategy[int]:
    """Unsigned integers of `bits`, with their edges."""
    top = 2**bits - 1
    return st.one_of(st.sampled_from([0, 1, top, top - 1, 2**(bits - 1)]),
                     st.integers(0, top))


def mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings with a few bytes flipped, cut, inserted or appended."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "set", "cut", "insert", "append", "truncate"]))
            at = draw(st.integers(0, len(data))) if data else 0
            if op == "flip" and at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "set" and at < len(data):
                data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, len(data) & 0xFF]))
            elif op == "cut" and at < len(data):
                del data[at:at + draw(st.integers(1, 8))]
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == "append":
                data += draw(st.binary(min_size=1, max_size=64))
            elif op == "truncate":
                del data[at:]
        return bytes(data)

    return mutate()
