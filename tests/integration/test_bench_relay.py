"""Smoke tests of the relay benchmark (bench/relay.py): the TURN client's message encoding
against RFC 5769's test vector, and a --quick run of `direct` and `fastpath` (no coturn, no
QUIC) in which packets must arrive. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import turn  # noqa: E402

# RFC 5769 section 2.4: a request with long-term authentication (MESSAGE-INTEGRITY, no
# FINGERPRINT); the password is "TheMatrIX" after SASLprep.
RFC5769_LONG_TERM = bytes.fromhex(
    "00010060 2112a442 78ad3433 c6ad72c0 29da412e"
    " 00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000"
    " 0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341"
    " 0014000b 6578616d 706c652e 6f726700"
    " 00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666")


def test_long_term_message_integrity_matches_rfc5769() -> None:
    msg = turn.Message.decode(RFC5769_LONG_TERM)
    assert msg.type == turn.BINDING | turn.REQUEST
    username = msg.get(turn.USERNAME)
    realm = msg.get(turn.REALM)
    assert username is not None and realm == b"example.org"
    key = turn.long_term_key(username.decode(), realm.decode(), "TheMatrIX")
    unsigned = turn.Message(msg.type, msg.transaction,
                            [(k, v) for k, v in msg.attrs if k != turn.MESSAGE_INTEGRITY])
    assert unsigned.encode(key, fingerprint=False) == RFC5769_LONG_TERM


def test_xor_address_round_trip() -> None:
    value = turn.xor_address(("192.0.2.1", 32853))
    assert value == bytes.fromhex("0001a147e112a643")  # RFC 5769 section 2.2
    assert turn.parse_xor_address(value) == ("192.0.2.1", 32853)
    assert turn.channel_data(0x4000, b"abc") == b"\x40\x00\x00\x03abc"


def test_quick_bench_direct_and_fastpath_deliver_packets() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--quick", "--json",
         "--only", "fastpath,fastmetrics", "--duration", "0.25", "--latency-duration", "0.5"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report["relays"]) == {"direct", "fastpath", "fastmetrics"}
    # the metrics variant was scraped while it forwarded, and served skymesh's families
    scraped = report["relays"]["fastmetrics"]
    assert scraped["scrapes"] > 0 and scraped["scrape_errors"] == 0
    assert scraped["scrape_bytes"] > 1000
    for name, result in report["relays"].items():
        assert "error" not in result, (name, result)
        latency = result["latency"]
        assert latency["received"] > 0 and latency["samples"] == latency["received"], name
        assert latency["p50_ms"] is not None and latency["p50_ms"] > 0, name
    assert report["aims"]  # the report always lists the aims, met or not
