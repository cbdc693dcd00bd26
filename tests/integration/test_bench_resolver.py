"""bench/resolver.py runs (a tiny run: the figures are the benchmark's to report, not this
test's): lookups in process beside the baseline, and Resolve over gRPC with TLS from a
process of its own, every request answered."""

from __future__ import annotations

import json
import subprocess
import sys

from support import ROOT


def test_the_resolver_bench_reports_lookups_and_grpc_latency():
    proc = subprocess.run([sys.executable, "bench/resolver.py", "--regions", "20",
                           "--lookups", "300", "--rate", "100", "--seconds", "1", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lookups_per_s"] > 0 and out["baseline_lookups_per_s"] > 0
    assert out["unkept_lookups_per_s"] > 0 and out["cold_lookups_per_s"] > 0
    assert out["requests"] == 100 and out["answered"] == 100 and out["failed"] == 0
    assert 0 < out["grpc_p50_ms"] <= out["grpc_p99_ms"] <= out["grpc_max_ms"]
    assert set(out["aims"]) == {"lookups_per_s", "grpc_p99_ms"}
