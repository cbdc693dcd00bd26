"""Danmaku capacity of one edge core: the most viewer sessions one edge process, pinned to a
core of its own, holds while every viewer comments once a second and receives the thinned
stream, with the comments' delivery p99 under 500 ms; the host's messages' p99 beside it.

    python bench/danmaku.py [--start 250] [--step 250] [--max 3000] [--json]

Each trial starts a fresh edge (bench/relay_target.py edge, the relay's own QUIC edge) on the
edge core, then load generators in processes of their own on the other core: `--generators`
processes holding the viewer sessions (real aioquic connections speaking the edge's protocol,
each its own user), and a host session publishing a reliable message every 0.1 s. Once every
session has joined, the storm runs: each viewer comments once a second at a phase of its own,
and the edge shows each viewer a fair sample of up to 20 comments a second, one line per 0.1 s
tick (relay/danmaku.py). After `--warm` seconds, `--measure` seconds are counted:

- comment delivery: a comment's send time (in its body, CLOCK_MONOTONIC, one clock for the
  whole machine) to its arrival at each viewer shown it;
- host messages: the same for the host's messages, every one of which every viewer must get;
- CPU seconds of the edge and of the generators, over the window.

A trial passes when the comments' p99 is under 500 ms, every viewer got every host message of
the window, and no session was closed. Trials go up by `--step` sessions until one fails; the
capacity is the last that passed. When the generators' core is as busy as the edge's, the
figure is a floor: the generators, not the edge, were the limit, and the output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/relay.py
sys.path.insert(0, str(HERE.parent))

from bench.control_plane import stop  # noqa: E402
from skymesh import edgeproto  # noqa: E402

AIM_SESSIONS = 1000
P99_LIMIT_MS = 500.0
HOST_RATE = 2.0  # the host's messages a second (answers, gifts, orders: reliable)
COMMENT_EVERY_S = 1.0
BUCKETS = 10_000  # latency histogram: 1 ms buckets, the last one for everything above
CHANNEL = "storm"
EDGE_CPU, GEN_CPU = 1, 0
CONNECT_AT_ONCE = 25  # handshakes a generator has in flight at once
BUSY = 0.9  # a core this busy over the window was a limit


# -- the generator process ---------------------------------------------------------------------

def _pin(cpu: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.sched_setaffinity(0, {cpu})


def _histogram() -> array:
    return array("q", bytes(8 * BUCKETS))


def _record(hist: array, latency_ns: int) -> None:
    hist[min(BUCKETS - 1, max(0, latency_ns // 1_000_000))] += 1


class Viewer:
    """One session's protocol side: lines in, counted; what it sends goes through `send`."""

    def __init__(self, name: str, stats: dict) -> None:
        self.name = name
        self.stats = stats
        self.buffer = b""
        self.joined: asyncio.Future = asyncio.get_running_loop().create_future()
        self.host_seqs: set[int] = set()
        self.closed = False

    def datagram(self, data: bytes) -> None:
        """A datagram of the edge's: a tick's comments (this bench sends no media)."""
        if data[:1] != edgeproto.COMMENTS_DATAGRAM:
            return
        now = time.monotonic_ns()
        st = self.stats
        if st["from_ns"] <= now < st["until_ns"]:
            st["comment_datagrams"] += 1
            for _uid, body in edgeproto.decode_batch(data[1:]):
                _record(st["comment_hist"], now - int(body.split(" ", 1)[0]))
                st["comments_shown"] += 1

    def lines(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        *complete, self.buffer = self.buffer.split(b"\n")
        now = time.monotonic_ns()
        st = self.stats
        for line in complete:
            msg = edgeproto.decode_line(line)
            kind = msg.get("type")
            if kind == "message":
                seq, sent = (int(x) for x in msg["body"].split(" ", 2)[:2])
                self.host_seqs.add(seq)
                if st["host_first"] <= seq < st["host_end"]:
                    _record(st["host_hist"], now - sent)
            elif kind == "joined":
                if not self.joined.done():
                    self.joined.set_result(msg)
            elif kind == "refused":
                st["refused"] += 1


async def _open(host: str, port: int, ca: str, token: str, viewer: Viewer) -> object:
    """A session joined to the channel. (Never closed: the process ends without closing its
    sessions one by one, and the edge is stopped with it.)"""
    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import (
        ConnectionTerminated,
        DatagramFrameReceived,
        StreamDataReceived,
    )

    from skymesh.net.quic import Protocol

    class Client(Protocol):
        def quic_event_received(self, event) -> None:
            if isinstance(event, DatagramFrameReceived):
                viewer.datagram(event.data)
            elif isinstance(event, StreamDataReceived):
                viewer.lines(event.data)
            elif isinstance(event, ConnectionTerminated):
                viewer.closed = True
                viewer.stats["closed"] += 1
                why = viewer.stats["close_reasons"]
                reason = event.reason_phrase or f"code {event.error_code}"
                why[reason] = why.get(reason, 0) + 1
                if not viewer.joined.done():
                    viewer.joined.set_exception(ConnectionError(
                        f"closed with code {event.error_code}: {event.reason_phrase}"))

    config = QuicConfiguration(is_client=True, alpn_protocols=[edgeproto.ALPN],
                               max_datagram_frame_size=edgeproto.MAX_DATAGRAM_FRAME_SIZE,
                               server_name="localhost")
    config.load_verify_locations(cafile=ca)
    viewer.connection = connect(host, port, configuration=config,  # type: ignore[attr-defined]
                                create_protocol=Client)  # kept: collected, it would close
    client = await viewer.connection.__aenter__()  # type: ignore[attr-defined]
    stream = client._quic.get_next_available_stream_id()
    client.stream = stream

    def send(obj: dict) -> None:
        if not viewer.closed:
            client._quic.send_stream_data(stream, edgeproto.encode_line(obj))
            client.transmit_soon()
    viewer.send = send  # type: ignore[attr-defined]
    send(edgeproto.join(token, CHANNEL))
    await asyncio.wait_for(viewer.joined, 60)
    return client


async def generate(args: argparse.Namespace) -> dict:
    from skymesh.token import issue, load_private_key

    key = load_private_key(Path(args.key).read_bytes())
    host, port = args.edge.rsplit(":", 1)
    stats = {"comment_hist": _histogram(), "host_hist": _histogram(), "lag_hist": _histogram(),
             "comment_datagrams": 0,
             "comments_shown": 0, "comments_sent": 0, "refused": 0, "closed": 0,
             "close_reasons": {}, "from_ns": 1 << 62, "until_ns": 1 << 62,
             "host_first": 1 << 62, "host_end": 1 << 62}
    is_host = args.role == "host"
    privileges = ["join", "publish-messages"] if is_host else ["join"]
    viewers: list[Viewer] = []
    t0 = time.monotonic()
    names = [f"{args.name}-{i}" for i in range(args.sessions)]
    for first in range(0, len(names), CONNECT_AT_ONCE):
        batch = []
        for name in names[first:first + CONNECT_AT_ONCE]:
            v = Viewer(name, stats)
            viewers.append(v)
            token = issue(app="bench", private_key=key, channel=CHANNEL, uid=name,
                          zone="global", privileges=privileges, ttl_s=3600)
            batch.append(_open(host, int(port), args.ca, token, v))
        await asyncio.gather(*batch)
    import gc
    gc.collect()
    gc.freeze()  # the sessions' objects live to the end: no collector passes over them
    print(json.dumps({"ready": len(viewers), "connect_s": time.monotonic() - t0}),
          flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    go = json.loads(line)  # {"start_ns", "warm_s", "measure_s", "grace_s"}
    start = go["start_ns"]
    stats["from_ns"] = start + int(go["warm_s"] * 1e9)
    stats["until_ns"] = stats["from_ns"] + int(go["measure_s"] * 1e9)
    every = 1 / go["host_rate"]
    stats["host_first"] = int(go["warm_s"] / every)
    stats["host_end"] = int((go["warm_s"] + go["measure_s"]) / every)
    stop_ns = stats["until_ns"] + int(go["grace_s"] * 1e9)
    await _sleep_until(start)
    cpu0 = cpu1 = None
    if is_host:
        await _host(viewers[0], start, stats["until_ns"], every)
    else:
        cpu0, cpu1 = await _storm(viewers, start, stats)
    await _sleep_until(stop_ns)
    host_missing = 0
    if not is_host:
        want = set(range(stats["host_first"], stats["host_end"]))
        host_missing = sum(len(want - v.host_seqs) for v in viewers)
    return {"sessions": len(viewers), "comments_sent": stats["comments_sent"],
            "comment_datagrams": stats["comment_datagrams"],
            "comments_shown": stats["comments_shown"],
            "refused": stats["refused"], "closed": stats["closed"],
            "close_reasons": stats["close_reasons"], "host_missing": host_missing,
            "window_cpu_s": None if cpu0 is None else cpu1 - cpu0,
            "comment_hist": _sparse(stats["comment_hist"]),
            "host_hist": _sparse(stats["host_hist"]),
            "lag_hist": _sparse(stats["lag_hist"])}


def _sparse(hist: array) -> dict[str, int]:
    return {str(i): n for i, n in enumerate(hist) if n}


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def _host(host: Viewer, start_ns: int, until_ns: int, every: float) -> None:
    """A reliable message every `every` s from the start, numbered by its slot."""
    seq = 0
    while True:
        due = start_ns + int(seq * every * 1e9)
        if due > until_ns + int(every * 1e9):
            return
        await _sleep_until(due)
        host.send(edgeproto.publish(seq, f"{seq} {time.monotonic_ns()} host"))  # type: ignore[attr-defined]
        seq += 1


async def _storm(viewers: list[Viewer], start_ns: int, stats: dict) -> tuple[float, float]:
    """Every viewer comments once a COMMENT_EVERY_S, viewer i at phase i/len of it, until
    the window ends; the CPU this process spent in the window."""
    n = len(viewers)
    tick = 0.01  # comments leave in 100 slots a second
    slots = int(COMMENT_EVERY_S / tick)
    by_slot: list[list[Viewer]] = [[] for _ in range(slots)]
    for i, v in enumerate(viewers):
        by_slot[i * slots // n].append(v)
    cpu0 = cpu1 = None
    k = 0
    while True:
        due = start_ns + int(k * tick * 1e9)
        if due >= stats["until_ns"]:
            break
        if cpu0 is None and due >= stats["from_ns"]:
            cpu0 = time.process_time()
        await _sleep_until(due)
        now = time.monotonic_ns()
        if stats["from_ns"] <= now < stats["until_ns"]:
            _record(stats["lag_hist"], now - due)  # how late this process's loop ran
        for v in by_slot[k % slots]:
            v.send(edgeproto.comment(f"{now} {v.name} says hi"))  # type: ignore[attr-defined]
            if stats["from_ns"] <= now < stats["until_ns"]:
                stats["comments_sent"] += 1
        k += 1
    cpu1 = time.process_time()
    return cpu0 if cpu0 is not None else cpu1, cpu1


def generator_main(args: argparse.Namespace) -> int:
    _pin(GEN_CPU if args.cpu is None else args.cpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    import gc

    from relay.node import GC_THRESHOLDS
    gc.set_threshold(*GC_THRESHOLDS)  # as the relay's: the generators must not be the limit
    try:
        result = loop.run_until_complete(generate(args))
    except Exception as e:  # reported to the harness
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        os._exit(1)
    print(json.dumps({"result": result}), flush=True)
    os._exit(0)  # its sessions are not closed one by one


# -- the harness -------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cpu_s(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of process `pid`."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def percentile_ms(hist: dict[int, int], p: float) -> float | None:
    """The p-th percentile of a 1 ms histogram (the bucket's upper edge), None when empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = p / 100 * total
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return float(ms + 1)
    return float(max(hist) + 1)


def _merge(into: dict[int, int], sparse: dict[str, int]) -> None:
    for k, n in sparse.items():
        into[int(k)] = into.get(int(k), 0) + n


def _readline(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """The next JSON line `proc` prints, within `timeout` s."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise TimeoutError(f"{what}: nothing within {timeout:.0f} s")
        line = proc.stdout.readline()
    finally:
        sel.close()
    if not line:
        raise RuntimeError(f"{what} exited ({proc.wait()})")
    msg = json.loads(line)
    if "error" in msg:
        raise RuntimeError(f"{what}: {msg['error']}")
    return msg


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        from skymesh.certs import ensure_dev_ca, issue_cert
        from skymesh.token import encode_public_key, generate_key, private_key_pem, public_key_of

        self.args = args
        self.workdir = workdir
        ensure_dev_ca(workdir)
        self.cert, self.key = issue_cert(workdir, workdir, "relay", ["127.0.0.1", "localhost"])
        self.ca = workdir / "ca.pem"
        app_key = generate_key()
        self.app_key_file = workdir / "app.key"
        self.app_key_file.write_bytes(private_key_pem(app_key))
        self.public_key = encode_public_key(public_key_of(app_key))

    def _edge(self, stack: contextlib.ExitStack) -> tuple[subprocess.Popen, str]:
        limits = ("sessions-per-source=1000000,joins-per-source-per-s=100000,"
                  "joins-per-source-burst=100000")
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "relay_target.py"), "edge", "--host", "127.0.0.1",
             "--port", "0", "--cert", str(self.cert), "--key", str(self.key), "--app", "bench",
             f"--public-key={self.public_key}", "--region", "rly", "--limits", limits],
            stdout=subprocess.PIPE, stderr=open(self.workdir / "edge.log", "ab"), text=True,
            preexec_fn=lambda: _pin(self.args.edge_cpu))
        stack.callback(stop, proc)
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            raise TimeoutError("the edge did not start within 30 s")
        line = proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "ready":
            log_text = (self.workdir / "edge.log").read_text()[-2000:]
            raise RuntimeError(f"the edge did not start: {log_text}")
        return proc, f"{line[1]}:{line[2]}"

    def _generator(self, stack: contextlib.ExitStack, edge: str, name: str, sessions: int,
                   role: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "gen", "--edge", edge, "--ca",
             str(self.ca), "--key", str(self.app_key_file), "--sessions", str(sessions),
             "--name", name, "--role", role, "--cpu", str(self.args.gen_cpu)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.workdir / f"{name}.log", "ab"), text=True)
        stack.callback(stop, proc)
        return proc

    def trial(self, sessions: int) -> dict:
        a = self.args
        with contextlib.ExitStack() as stack:
            edge, address = self._edge(stack)
            per = [sessions // a.generators + (i < sessions % a.generators)
                   for i in range(a.generators)]
            gens = [self._generator(stack, address, f"v{i}", k, "viewer")
                    for i, k in enumerate(per) if k]
            host = self._generator(stack, address, "host", 1, "host")
            t0 = time.monotonic()
            connect_s = 0.0
            for i, g in enumerate([*gens, host]):
                ready = _readline(g, 60 + sessions / 10, f"generator {i}")
                connect_s = max(connect_s, ready["connect_s"])
            joined_s = time.monotonic() - t0
            start = time.monotonic_ns() + 1_000_000_000
            go = {"start_ns": start, "warm_s": a.warm, "measure_s": a.measure, "grace_s": 2.0,
                  "host_rate": a.host_rate}
            for g in [*gens, host]:
                g.stdin.write(json.dumps(go) + "\n")
                g.stdin.flush()
            from_ns = start + int(a.warm * 1e9)
            until_ns = from_ns + int(a.measure * 1e9)
            time.sleep(max(0.0, (from_ns - time.monotonic_ns()) / 1e9))
            edge0 = _cpu_s(edge.pid)
            time.sleep(max(0.0, (until_ns - time.monotonic_ns()) / 1e9))
            edge1 = _cpu_s(edge.pid)
            results = [_readline(g, 60 + sessions / 10, f"generator {i}")["result"]
                       for i, g in enumerate([*gens, host])]
        viewers = results[:-1]
        comment_hist: dict[int, int] = {}
        host_hist: dict[int, int] = {}
        lag_hist: dict[int, int] = {}
        for r in viewers:
            _merge(comment_hist, r["comment_hist"])
            _merge(host_hist, r["host_hist"])
            _merge(lag_hist, r["lag_hist"])
        host_sent = int((a.warm + a.measure) * a.host_rate) - int(a.warm * a.host_rate)
        gen_cpu = sum(r["window_cpu_s"] or 0.0 for r in viewers)
        edge_user = edge_sys = None
        if edge0 is not None and edge1 is not None:
            edge_user = (edge1[0] - edge0[0]) / a.measure
            edge_sys = (edge1[1] - edge0[1]) / a.measure
        edge_share = None if edge_user is None else edge_user + edge_sys
        out = {
            "sessions": sessions, "generators": len(gens), "joined_s": round(joined_s, 1),
            "comments_sent_per_s": round(sum(r["comments_sent"] for r in viewers)
                                         / a.measure),
            "shown_per_viewer_per_s": round(sum(r["comments_shown"] for r in viewers)
                                            / sessions / a.measure, 1),
            "comment_ms": {"p50": percentile_ms(comment_hist, 50),
                           "p99": percentile_ms(comment_hist, 99),
                           "samples": sum(comment_hist.values())},
            "host_ms": {"p50": percentile_ms(host_hist, 50),
                        "p99": percentile_ms(host_hist, 99),
                        "samples": sum(host_hist.values())},
            "generator_lag_ms": {"p50": percentile_ms(lag_hist, 50),
                                 "p99": percentile_ms(lag_hist, 99)},
            "host_messages": host_sent,
            "host_missing": sum(r["host_missing"] for r in viewers),
            "refused": sum(r["refused"] for r in viewers),
            "closed": sum(r["closed"] for r in results),
            "close_reasons": {k: v for r in results for k, v in r["close_reasons"].items()},
            "edge_cpu": None if edge_share is None else round(edge_share, 2),
            "edge_cpu_system": None if edge_sys is None else round(edge_sys, 2),
            "generators_cpu": round(gen_cpu / a.measure, 2),
        }
        p99 = out["comment_ms"]["p99"]
        out["passed"] = (p99 is not None and p99 < P99_LIMIT_MS and out["host_missing"] == 0
                         and out["closed"] == 0)
        out["generators_busy"] = out["generators_cpu"] >= BUSY
        return out


def row(r: dict) -> str:
    c, h = r["comment_ms"], r["host_ms"]
    return (f"{r['sessions']:>6} sessions: comments p50 {c['p50']} ms p99 {c['p99']} ms, host "
            f"p50 {h['p50']} ms p99 {h['p99']} ms, {r['shown_per_viewer_per_s']}/s shown "
            f"a viewer, {r['host_missing']} host messages missed, {r['closed']} closed; edge "
            f"CPU {r['edge_cpu']:.0%} ({r['edge_cpu_system']:.0%} in the kernel), generators "
            f"{r['generators_cpu']:.0%} (their loops late by p99 {r['generator_lag_ms']['p99']} ms)"
            f" -> {'pass' if r['passed'] else 'FAIL'}")


def capacity(args: argparse.Namespace, say=log) -> dict:
    """Trials from `start` up by `step` until one fails (or `max`); the last that passed."""
    with tempfile.TemporaryDirectory(prefix="skymesh-danmaku-") as work:
        bench = Bench(args, Path(work))
        trials = []
        n = args.start
        while n <= args.max:
            r = bench.trial(n)
            trials.append(r)
            say(row(r))
            if not r["passed"]:
                break
            n += args.step
    passed = [r for r in trials if r["passed"]]
    best = passed[-1] if passed else None
    limited = None
    if best is not None:
        failing = trials[-1] if not trials[-1]["passed"] else None
        basis = failing or best
        limited = ("generators" if basis["generators_busy"] and (basis["edge_cpu"] or 0) < BUSY
                   else "edge" if (basis["edge_cpu"] or 0) >= BUSY else "neither core")
        if failing is None:
            limited = f"not reached (--max {args.max})"
    sessions = best["sessions"] if best else 0
    # the edge's core was not full at the largest load that passed when the generators were
    # the limit: what the edge held per core of its own, scaled by the share it used
    per_core = round(sessions / best["edge_cpu"]) if best and best["edge_cpu"] else None
    return {"sessions_per_edge_core": sessions, "aim": AIM_SESSIONS,
            "p99_limit_ms": P99_LIMIT_MS, "at_capacity": best, "trials": trials,
            "limited_by": limited, "scaled_to_a_full_core": per_core,
            "meets_aim": sessions >= AIM_SESSIONS}


def summary(out: dict) -> str:
    best = out["at_capacity"]
    text = (f"danmaku: {out['sessions_per_edge_core']} viewer sessions on one edge core with "
            f"comments' p99 under {P99_LIMIT_MS:.0f} ms (aim: at least {AIM_SESSIONS}: "
            f"{'PASS' if out['meets_aim'] else 'MISS'}); host messages' p99 there "
            f"{best['host_ms']['p99'] if best else None} ms; limited by {out['limited_by']}")
    if best and out["limited_by"] == "generators":
        text += (f"; the edge used {best['edge_cpu']:.0%} of its core there: "
                 f"{out['scaled_to_a_full_core']} scaled to a full core")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=int, default=400, help="sessions in the first trial "
                        "(default: %(default)s)")
    parser.add_argument("--step", type=int, default=100, help="sessions added per trial "
                        "(default: %(default)s)")
    parser.add_argument("--max", type=int, default=2000, help="stop here (default: "
                        "%(default)s)")
    parser.add_argument("--generators", type=int, default=2, help="viewer generator "
                        "processes (default: %(default)s)")
    parser.add_argument("--warm", type=float, default=3.0, help="seconds of storm before the "
                        "window (default: %(default)s)")
    parser.add_argument("--measure", type=float, default=8.0, help="seconds counted "
                        "(default: %(default)s)")
    parser.add_argument("--host-rate", type=float, default=HOST_RATE, help="the host's "
                        "messages a second (default: %(default)s)")
    parser.add_argument("--edge-cpu", type=int, default=EDGE_CPU)
    parser.add_argument("--gen-cpu", type=int, default=GEN_CPU)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["gen"]:
        gen = argparse.ArgumentParser(prog="danmaku.py gen")
        gen.add_argument("--edge", required=True)
        gen.add_argument("--ca", required=True)
        gen.add_argument("--key", required=True)
        gen.add_argument("--sessions", type=int, required=True)
        gen.add_argument("--name", required=True)
        gen.add_argument("--role", choices=("viewer", "host"), required=True)
        gen.add_argument("--cpu", type=int)
        return generator_main(gen.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = capacity(args)
    log(summary(out))
    if args.json:
        print(json.dumps(out))
    return 0 if out["meets_aim"] else 1


if __name__ == "__main__":
    sys.exit(main())
