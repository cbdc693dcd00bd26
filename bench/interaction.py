"""Live-commerce interactions on the local mesh. So far: 1:1 calls sealed end to end.

    python bench/interaction.py [--calls 10] [--pairs london:frankfurt,london:tokyo] [--json]

Starts a local mesh of the pairs' regions and a few between them (latencies from geography,
emulated in the relays' send path), then for each pair of regions places `--calls` calls one
after the other (`skymesh call`: two sessions join a fresh private channel at once, each
sealing test frames with SFrame under a key only they hold) and prints, per pair, the time
from the call to the
first frame received on each side, p50 and p99, beside the aim (the route's one-way cost plus
150 ms), the latency each way, and what sealing costs per 1,000-byte frame.

Co-hosting's skew and the danmaku capacity (issue 19) are not measured here yet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skymesh.cli import admin  # noqa: E402
from skymesh.cli.call import run_call, seal_cost_us  # noqa: E402
from skymesh.cli.common import run_loop  # noqa: E402
from skymesh.cli.drillstats import percentile  # noqa: E402

AIM_EXTRA_MS = 150.0  # time to first frame: under the route's one-way cost plus this
DEFAULT_PAIRS = "london:frankfurt,london:tokyo,singapore:sao-paulo"
TRANSIT = ("ashburn", "amsterdam", "hong-kong")  # regions between them, for the overlay


def skymesh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skymesh", *args], text=True,
                          capture_output=True, timeout=timeout)


def pct(values: list[float], p: float) -> float | None:
    v = percentile(values, p)
    return None if v is None else round(v, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per pair (default: "
                        "%(default)s)")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, metavar="A:B,...",
                        help="pairs of regions (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds of each call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else \
        (lambda m: print(m, flush=True))
    pairs = [tuple(p.split(":", 1)) for p in args.pairs.split(",") if p]

    with tempfile.TemporaryDirectory(prefix="skymesh-interaction-") as work:
        os.environ["SKYMESH_HOME"] = str(Path(work) / "home")
        t0 = time.monotonic()
        only = sorted({r for pair in pairs for r in pair} | set(TRANSIT))
        up = skymesh("up", "--detach", "--json", "--no-dashboard", "--only", ",".join(only))
        if up.returncode != 0:
            print(f"skymesh up failed:\n{up.stderr}", file=sys.stderr)
            return 1
        rows = []
        try:
            address = json.loads(up.stdout)["controller"]
            say(f"local mesh: {admin.status(address)['relays']} relays, up in "
                f"{time.monotonic() - t0:.1f} s")
            for src, dst in pairs:
                first = {"caller": [], "callee": []}
                lat = {"there": [], "back": []}
                cost = None
                for _ in range(args.calls):
                    d = run_loop(run_call(address, src, dst, args.duration, 50.0, True))
                    there, back = d[f"{src}->{dst}"], d[f"{dst}->{src}"]
                    cost = d["route"]["one_way_cost_ms"]
                    if there["first_frame_s"] is not None:
                        first["callee"].append(there["first_frame_s"] * 1000)
                    if back["first_frame_s"] is not None:
                        first["caller"].append(back["first_frame_s"] * 1000)
                    if there["latency_ms"]["p50"] is not None:
                        lat["there"].append(there["latency_ms"]["p50"])
                    if back["latency_ms"]["p50"] is not None:
                        lat["back"].append(back["latency_ms"]["p50"])
                both = first["caller"] + first["callee"]
                aim = cost + AIM_EXTRA_MS
                row = {"pair": f"{src}->{dst}", "calls": args.calls,
                       "one_way_cost_ms": round(cost, 1), "aim_ms": round(aim, 1),
                       "first_frame_ms": {"p50": pct(both, 50), "p99": pct(both, 99)},
                       "latency_p50_ms": {"there": pct(lat["there"], 50),
                                          "back": pct(lat["back"], 50)},
                       "within_aim": bool(both) and pct(both, 99) <= aim}
                rows.append(row)
                say(f"{row['pair']}: first frame p50 {row['first_frame_ms']['p50']} ms, "
                    f"p99 {row['first_frame_ms']['p99']} ms (aim {aim:.0f} ms: "
                    f"{'PASS' if row['within_aim'] else 'MISS'}), latency p50 "
                    f"{row['latency_p50_ms']['there']}/{row['latency_p50_ms']['back']} ms "
                    f"each way, route one-way cost {cost:.1f} ms")
        finally:
            skymesh("down", timeout=120)
    sealing = seal_cost_us()
    say(f"sealing a 1000-byte frame: {sealing['seal_us']} us, opening {sealing['open_us']} us, "
        f"{sealing['overhead_bytes']} bytes more")
    if args.json:
        print(json.dumps({"calls": rows, "sealing": sealing}))
    return 0 if all(r["within_aim"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
