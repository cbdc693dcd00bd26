"""Relay benchmark: packet rate and added latency of the skymesh relays against coturn and a
naive QUIC relay, measured in one run on loopback.

    python bench/relay.py [--quick] [--json] [--only direct,fastpath,edge,coturn,naive]
                          [--duration S] [--no-wakeup-limit]

Relays (one sender, one relay, one receiver; 1200-byte UDP packets into the relay):

  direct    sender -> receiver, no relay: the baseline for added latency, and the ceiling of
            the load generator.
  fastpath  (a) the relay-to-relay fast path: skymesh datagrams (relay/datagram.py: small binary
            header, AES-GCM encrypted payload and tag) through bench/relay_target.py fastpath,
            which checks each tag (decrypting) and forwards the datagram as it came.
  fastmetrics  (a) again with the relay's Prometheus endpoint on (relay/metrics.py) and
            scraped every second during every trial, as a Prometheus server would: the cost
            of metrics, measured beside (a) in the same run.
  edge      (b) the QUIC client edge (relay/edge.py) through bench/relay_target.py edge.
  coturn    (c) Debian's coturn: the sender allocates on it (long-term credentials) and sends
            ChannelData to the receiver as its peer (bench/turn.py). Installed with apt-get when
            missing; skipped with a message when it cannot be.
  naive     (d) bench/naive_quic_relay.py: aioquic with default settings on plain asyncio,
            decrypting and re-encrypting every datagram.

The relay runs pinned to CPU 1, the sender and receiver processes (bench/loadgen.py) to CPU 0.
UDP senders pace bursts against the monotonic clock and send them with UDP GSO; the QUIC
generator is two aioquic clients (edge protocol: join line, then QUIC datagrams of ~1100 bytes,
~1130 on the wire) whose sender builds its 1-RTT datagram packets itself (bench/loadgen.py
DatagramBlaster) and receiver decrypts datagram-only packets itself (DatagramCatcher). The
generator's sockets and the fast-path forwarder's get 4 MB socket buffers (coturn sizes its own
the same; the edge and the naive relay keep theirs). For each relay:

  1. max rate: trials of --duration seconds at an offered rate (doubling, then a binary
     search); a trial passes when the sender kept up and under 0.1% of the packets went
     missing (counted by sequence number, within 0.3 s after the last send; a trial that fails
     by under 1% is retried once). The highest passing offered rate is reported, with the
     relay's CPU use at that rate.
  2. latency: 5,000 packets/s for 3 s; each packet carries its CLOCK_MONOTONIC send time, the
     receiver takes the one-way latency; p50/p99, and "added" = the relay's minus direct's.
  3. edge only: overload at 1.5x its max rate, p99 of what still arrives.

The run holds the kernel's CPU wake-up latency limit at 0 us (PM QoS, /dev/cpu_dma_latency;
--no-wakeup-limit to skip), so that idle cores poll rather than halt: a halted core of this VM
takes about 0.5 ms to wake, which would show as every relay's latency. All relays run under it.

Each trial also samples the CPU use of every other process on the machine: a busy machine is
reported (progress lines, JSON, limits), since it skews every number here.

Aims printed at the end: (a) rate >= coturn's and added p99 < 1 ms; (b) rate >= 3x (d)'s and
added p99 < 5 ms, overload p99 < 20 ms. Exits 0 even when an aim is missed: it is a report.
Progress goes to stderr; --json prints machine-readable results on stdout instead of the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/relay.py must not shadow the `relay` package: drop the script's directory from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
from bench.loadgen import (  # noqa: E402
    GEN_CPU,
    PACKET_SIZE,
    QUIC_PAYLOAD,
    SOCKET_BUFFER,
    GeneratorError,
    QuicGenerator,
    TrialResult,
    UdpGenerator,
    die_with_parent,
    pin,
)
from bench.turn import binding  # noqa: E402
from skymesh.edgeproto import MEDIA_DATAGRAM  # noqa: E402

RELAY_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
RELAYS = ("direct", "fastpath", "fastmetrics", "edge", "coturn", "naive")
LABELS = {"direct": "direct", "fastpath": "(a) fastpath", "fastmetrics": "(a) + metrics",
          "edge": "(b) edge", "coturn": "(c) coturn", "naive": "(d) naive"}
SCRAPE_EVERY_S = 1.0
# how far apart two runs of the same relay's max rate may be and still count as the same (the
# search stops within 5% of the rate, and runs of the fast path differ about as much)
METRICS_NOISE = 0.9
MAX_LOSS = 0.001
KEEP_UP = 0.97  # a trial whose sender offered less than this share of the rate does not count
LATENCY_PPS = 5000
OVERLOAD_FACTOR = 1.5
START_PPS = {"direct": 50_000, "fastpath": 20_000, "fastmetrics": 20_000, "coturn": 20_000,
             "edge": 4_000, "naive": 2_000}
TURN_USER = "bench"
TURN_REALM = "skymesh"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- environment -------------------------------------------------------------------------------

def other_processes() -> list[str]:
    """Command lines of running skymesh/relay/TURN processes that are not ours."""
    mine = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in mine:  # our ancestors (a wrapping `timeout`, a shell) are fine
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if any(word in cmd for word in ("skymesh", "relay_target", "naive_quic_relay",
                                        "turnserver", "bench/relay.py")):
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def raise_buffer_limits(size: int = SOCKET_BUFFER) -> dict[str, int]:
    """Make net.core.rmem_max/wmem_max at least `size` if we may (root); returns the values
    in force afterwards."""
    out = {}
    for name in ("rmem_max", "wmem_max"):
        path = Path("/proc/sys/net/core") / name
        try:
            value = int(path.read_text())
        except (OSError, ValueError):
            continue
        if value < size and os.geteuid() == 0:
            try:
                path.write_text(str(size))
                log(f"raised net.core.{name} from {value} to {size}")
                value = size
            except OSError as e:
                log(f"could not raise net.core.{name} ({value}): {e}")
        out[name] = value
    return out


def ensure_turnserver() -> tuple[str | None, str]:
    """coturn's turnserver binary, installing Debian's coturn when missing; (None, why) if
    it is not available."""
    path = shutil.which("turnserver")
    if path:
        return path, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "turnserver is not installed and this is not root with apt-get"
    log("turnserver not found: installing coturn from Debian's packages "
        "(apt-get update; apt-get install coturn)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "coturn"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{' '.join(cmd)} failed: {e}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return None, f"{' '.join(cmd)} failed: {' '.join(tail)}"
    path = shutil.which("turnserver")
    return (path, "") if path else (None, "coturn installed but turnserver is not on PATH")


@contextlib.contextmanager
def cpu_wakeup_limit(limit_us: int | None) -> Iterator[str]:
    """Hold the kernel's limit on CPU wake-up latency (PM QoS: /dev/cpu_dma_latency, kept while
    the file is open) at `limit_us` for the whole run, as tuned's latency-performance profile
    does; yields what is in force, for the report. At 0 idle cores poll instead of halting. On
    this VM a halted core takes about 0.5 ms to wake, which a relay at 5,000 packets/s pays on
    most packets: host noise, not relay latency. Every relay runs under the same limit."""
    if limit_us is None:
        yield "not set (--no-wakeup-limit)"
        return
    try:
        fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    except OSError as e:
        log(f"note: cannot hold the CPU wake-up latency limit ({e.strerror}); idle cores halt "
            "and latency figures include their wake-up")
        yield f"not set ({e.strerror})"
        return
    try:
        os.write(fd, struct.pack("=i", limit_us))
        yield f"{limit_us} us"
    finally:
        os.close(fd)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_by_process(exclude: set[int]) -> dict[int, float]:
    """CPU seconds used so far by every user process (kernel threads aside) not in
    `exclude`: two snapshots tell how busy the rest of the machine was during a trial."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            if not (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


# -- relay processes ---------------------------------------------------------------------------

def _relay_child() -> None:
    die_with_parent()
    pin(RELAY_CPU)


@contextlib.contextmanager
def relay_process(cmd: list[str], name: str, logdir: Path,
                  ready: Callable[[subprocess.Popen], tuple[str, int]]) -> Iterator[
                      tuple[subprocess.Popen, tuple[str, int]]]:
    """Start a relay pinned to RELAY_CPU, wait for `ready`, stop it on exit (also on errors
    and Ctrl-C)."""
    logfile = open(logdir / f"{name}.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logfile, text=True, cwd=ROOT,
                            preexec_fn=_relay_child)
    try:
        addr = ready(proc)
        yield proc, addr
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        logfile.close()


def ready_line(timeout: float = 30, extra: list[str] | None = None,
               ) -> Callable[[subprocess.Popen], tuple[str, int]]:
    """The relay's `ready HOST PORT [METRICS]` line; METRICS, if any, goes into `extra`."""
    def wait(proc: subprocess.Popen) -> tuple[str, int]:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise GeneratorError(f"the relay printed no ready line within {timeout:.0f} s")
        line = proc.stdout.readline().split()
        if len(line) not in (3, 4) or line[0] != "ready":
            raise GeneratorError(f"the relay did not start (exit status {proc.wait(5)}, "
                                 f"output {' '.join(line)!r})")
        if extra is not None:
            extra.extend(line[3:])
        return line[1], int(line[2])
    return wait


def stun_ready(port: int, timeout: float = 20) -> Callable[[subprocess.Popen], tuple[str, int]]:
    def wait(proc: subprocess.Popen) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise GeneratorError(f"turnserver exited with status {proc.returncode}")
                if binding(s, ("127.0.0.1", port)):
                    return "127.0.0.1", port
                time.sleep(0.1)
        raise GeneratorError(f"turnserver did not answer STUN within {timeout:.0f} s")
    return wait


def coturn_command(turnserver: str, port: int, password: str, workdir: Path) -> list[str]:
    return [turnserver, "-n",  # no configuration file
            "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
            "--listening-port", str(port),
            "--lt-cred-mech", "--user", f"{TURN_USER}:{password}", "--realm", TURN_REALM,
            "--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay", "--no-cli",
            "--allow-loopback-peers",
            "--relay-threads", "1",  # one relay thread (plus listener/auth threads), one core
            "--log-file", str(workdir / "turnserver.log"), "--simple-log", "--no-stdout-log",
            "--pidfile", str(workdir / "turnserver.pid")]


# -- measuring ---------------------------------------------------------------------------------

@dataclass
class Settings:
    duration: float
    latency_duration: float
    tolerance: float
    max_trials: int
    grace: float
    fine_clock: bool
    fast_quic: bool


class Bench:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.s = settings
        self.workdir = workdir
        self.trial_id = 0
        self.ceiling: float | None = None  # the direct max rate: the generator's ceiling
        self._certs: tuple[Path, Path, Path] | None = None
        from skymesh.token import generate_key
        self.app_key = generate_key()  # signs the bench's tokens; the edge gets its public key

    # -- one trial ---------------------------------------------------------------------------

    def trial(self, name: str, gen: Any, relay_pid: int | None, rate: float, duration: float,
              latency: bool = False, what: str = "") -> TrialResult:
        self.trial_id += 1
        ours = {os.getpid(), *gen.pids(), *([relay_pid] if relay_pid else [])}
        others0, t0 = cpu_by_process(ours), time.monotonic()
        res: TrialResult = gen.trial(self.trial_id, rate, duration, latency, self.s.grace)
        others1, wall = cpu_by_process(ours), time.monotonic() - t0
        res.others_cpu = sum(v - others0.get(pid, 0.0) for pid, v in others1.items()) / wall
        extra = ""
        if res.relay_cpu_s is not None and res.elapsed_s:
            extra += f", relay cpu {res.relay_cpu_s / res.elapsed_s:.0%}"
        extra += (f", gen cpu {res.sender_cpu_s / res.elapsed_s:.0%}+"
                  f"{res.receiver_cpu_s / res.elapsed_s:.0%}")
        if res.gen_dropped:
            extra += f", sender dropped {res.gen_dropped}"
        if latency and res.latencies_ns:
            extra += f", p50 {res.percentile_ms(50):.3f} ms, p99 {res.percentile_ms(99):.3f} ms"
        if res.others_cpu >= 0.05:
            extra += f", OTHER PROCESSES {res.others_cpu:.0%} cpu"
        log(f"  [{name}] {what}{rate:,.0f} pps: sent {res.sent} ({res.sent_pps:,.0f}/s), "
            f"received {res.received}, loss {100 * res.loss:.3f}%{extra}")
        return res

    @staticmethod
    def kept_up(res: TrialResult) -> bool:
        """The sender offered the rate: it finished its packets at most 3% (+5 ms of timer
        slack) late."""
        return res.elapsed_s <= res.duration_s * (2 - KEEP_UP) + 0.005

    def passes(self, res: TrialResult) -> bool:
        return res.loss < MAX_LOSS and self.kept_up(res)

    def max_rate(self, name: str, gen: Any, pid: int | None) -> dict[str, Any]:
        """Doubling from START_PPS until a trial fails, then a binary search; one retry for a
        trial that fails by a small margin (loss < 1%), against one-off hiccups."""
        ceiling = self.ceiling * 1.1 if self.ceiling else 2_000_000
        lo, hi = 0.0, None
        best: TrialResult | None = None
        worst: TrialResult | None = None
        trials = 0
        rate = min(START_PPS[name], ceiling)

        def attempt(rate: float) -> tuple[bool, TrialResult]:
            nonlocal trials
            trials += 1
            res = self.trial(name, gen, pid, rate, self.s.duration, what="max-rate ")
            if not self.passes(res) and res.loss < 0.01 and self.kept_up(res):
                trials += 1
                res = self.trial(name, gen, pid, rate, self.s.duration, what="retry ")
            return self.passes(res), res

        while hi is None and trials < self.s.max_trials:
            ok, res = attempt(rate)
            if ok:
                lo, best = rate, res
                if rate >= ceiling:
                    break
                rate = min(rate * 2, ceiling)
            else:
                hi, worst = rate, res
        while hi is not None and hi - lo > self.s.tolerance * hi and trials < self.s.max_trials:
            rate = (lo + hi) / 2
            ok, res = attempt(rate)
            if ok:
                lo, best = rate, res
            else:
                hi, worst = rate, res
        if best is not None:  # what the sender actually offered, if a little under the aim
            lo = min(lo, best.sent_pps)
        return {"max_pps": round(lo), "trials": trials, "best": best, "first_fail": worst}

    def limit_reason(self, name: str, found: dict[str, Any]) -> str:
        worst: TrialResult | None = found["first_fail"]
        best: TrialResult | None = found["best"]
        if worst is None:
            return "not reached (search stopped at the generator's ceiling or trial budget)"
        if not self.kept_up(worst):
            return (f"sender could not offer more than {worst.sent_pps:,.0f} pps "
                    f"(generator CPU {_share(worst.sender_cpu_s, worst.elapsed_s):.0%}"
                    f"+{_share(worst.receiver_cpu_s, worst.elapsed_s):.0%})")
        relay_cpu = _share(worst.relay_cpu_s, worst.elapsed_s)
        gen_cpu = _share(worst.sender_cpu_s + worst.receiver_cpu_s, worst.elapsed_s)
        if worst.others_cpu >= 0.25:
            return (f"CPU contention: other processes used {worst.others_cpu:.0%} of a CPU "
                    f"during the first failing trial ({worst.offered_pps:,.0f} pps)")
        if name == "direct":
            return f"generator: sender+receiver on one core ({gen_cpu:.0%} CPU)"
        if relay_cpu is not None and relay_cpu >= 0.8:
            return f"relay CPU ({relay_cpu:.0%} of its core at {worst.offered_pps:,.0f} pps)"
        if gen_cpu >= 0.85:
            return f"generator CPU ({gen_cpu:.0%} at {worst.offered_pps:,.0f} pps)"
        if worst.gen_dropped:
            return "QUIC sender's congestion window/pacer (datagrams dropped before sending)"
        busy = f"relay CPU {relay_cpu:.0%}" if relay_cpu is not None else ""
        if best is not None and best.relay_cpu_s is not None:
            busy += f" ({_share(best.relay_cpu_s, best.elapsed_s):.0%} at the max)"
        return f"loss without a saturated CPU ({busy}): queues/bursts"

    # -- per relay ---------------------------------------------------------------------------

    def certs(self) -> tuple[Path, Path, Path]:
        if self._certs is None:
            from skymesh.certs import ensure_dev_ca, issue_cert
            ensure_dev_ca(self.workdir)
            cert, key = issue_cert(self.workdir, self.workdir, "relay",
                                   ["127.0.0.1", "localhost"])
            self._certs = (self.workdir / "ca.pem", cert, key)
        return self._certs

    def public_key(self) -> str:
        from skymesh.token import encode_public_key, public_key_of
        return encode_public_key(public_key_of(self.app_key))

    def tokens(self) -> tuple[str, str]:
        from skymesh.token import issue
        privs = ["join", "publish-media", "publish-messages"]
        return tuple(issue(app="bench", private_key=self.app_key, channel="bench", uid=uid,  # type: ignore[return-value]
                           zone="global", privileges=privs, ttl_s=3600)
                     for uid in ("snd", "rcv"))

    def setup(self, name: str, stack: contextlib.ExitStack) -> tuple[Any, Any]:
        """(generator, relay process or None) for `name`; `stack` tears them down."""
        py = sys.executable
        gen: Any
        proc = None
        if name == "direct":
            gen = UdpGenerator("raw")
            stack.callback(gen.close)
            gen.connect(gen.receiver_addr)
        elif name in ("fastpath", "fastmetrics"):
            key = os.urandom(32).hex()
            gen = UdpGenerator("fastpath", key_hex=key)
            stack.callback(gen.close)
            host, port = gen.receiver_addr
            metrics: list[str] = []
            proc, addr = stack.enter_context(relay_process(
                [py, str(HERE / "relay_target.py"), "fastpath", "--host", "127.0.0.1",
                 "--port", "0", "--to", f"{host}:{port}", "--key-hex", key,
                 *(["--metrics-listen", "127.0.0.1:0"] if name == "fastmetrics" else [])],
                name, self.workdir, ready_line(extra=metrics)))
            gen.connect(addr)
            if name == "fastmetrics":
                self.scraper = stack.enter_context(Scraper(metrics[0]))
        elif name == "coturn":
            turnserver, why = ensure_turnserver()
            if turnserver is None:
                raise Skip(why)
            password = os.urandom(8).hex()
            port = free_udp_port()
            proc, addr = stack.enter_context(relay_process(
                coturn_command(turnserver, port, password, self.workdir), name, self.workdir,
                stun_ready(port)))
            gen = UdpGenerator("turn", user=TURN_USER, password=password)
            stack.callback(gen.close)
            gen.connect(addr)
        else:
            ca, cert, key = self.certs()
            if name == "edge":
                cmd = [py, str(HERE / "relay_target.py"), "edge", "--host", "127.0.0.1",
                       "--port", "0", "--cert", str(cert), "--key", str(key), "--app", "bench",
                       f"--public-key={self.public_key()}",  # base64url may start with "-"
                       "--region", "rly"]
            else:
                cmd = [py, str(HERE / "naive_quic_relay.py"), "--host", "127.0.0.1",
                       "--port", "0", "--cert", str(cert), "--key", str(key)]
            proc, addr = stack.enter_context(relay_process(cmd, name, self.workdir,
                                                           ready_line()))
            snd, rcv = self.tokens()
            gen = QuicGenerator(addr, ca, snd, rcv, fine_clock=self.s.fine_clock,
                                fast_path=self.s.fast_quic,
                                media_offset=len(MEDIA_DATAGRAM) if name == "edge" else 0)
            stack.callback(gen.close)
            if "fast_path_unavailable" in gen.receiver_joined:
                log(f"note: the QUIC receiver's fast path is off: "
                    f"{gen.receiver_joined['fast_path_unavailable']}")
        return gen, proc

    def run_relay(self, name: str, direct: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"relay": name, "label": LABELS[name]}
        log(f"{LABELS[name]}: starting")
        with contextlib.ExitStack() as stack:
            gen, proc = self.setup(name, stack)
            pid = proc.pid if proc is not None else None
            gen.watch_pid = pid
            warm = self.trial(name, gen, pid, 2000, min(0.5, self.s.duration), what="warm-up ")
            if warm.received == 0:
                raise GeneratorError(f"no packets arrive through {name}")
            found = self.max_rate(name, gen, pid)
            out["max_pps"] = found["max_pps"]
            out["search_trials"] = found["trials"]
            out["limited_by"] = self.limit_reason(name, found)
            best: TrialResult | None = found["best"]
            out["max_trial"] = _trial_json(best) if best else None
            out["first_failing_trial"] = (_trial_json(found["first_fail"])
                                          if found["first_fail"] else None)
            log(f"{LABELS[name]}: max {out['max_pps']:,} pps ({out['limited_by']})")
            lat = self.trial(name, gen, pid, LATENCY_PPS, self.s.latency_duration,
                             latency=True, what="latency ")
            out["latency"] = _trial_json(lat, latency=True)
            out["latency"]["above_max_rate"] = out["max_pps"] < LATENCY_PPS
            if direct is not None and direct.get("latency") and lat.latencies_ns:
                for q in ("p50_ms", "p99_ms"):
                    out[f"added_{q}"] = out["latency"][q] - direct["latency"][q]
            if name == "edge" and out["max_pps"]:
                rate = OVERLOAD_FACTOR * out["max_pps"]
                over = self.trial(name, gen, pid, rate, self.s.latency_duration, latency=True,
                                  what="overload ")
                out["overload"] = _trial_json(over, latency=True)
            if name == "coturn":
                out["coturn_version"] = _coturn_version(self.workdir / "turnserver.log")
            if name == "fastmetrics":
                out["scrapes"], out["scrape_errors"] = self.scraper.done, self.scraper.failed
                out["scrape_bytes"] = self.scraper.size
                log(f"{LABELS[name]}: {self.scraper.done} scrapes of {self.scraper.size:,} "
                    f"bytes, {self.scraper.failed} failed")
        return out


class Skip(Exception):
    pass


class Scraper:
    """Scrapes http://ADDRESS/metrics every SCRAPE_EVERY_S from a thread on the generators'
    core (not the relay's), as a Prometheus server would, until closed."""

    def __init__(self, address: str) -> None:
        self.url = f"http://{address}/metrics"
        self.done = self.failed = self.size = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def run(self) -> None:
        import urllib.request

        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {0})  # this thread only
        while not self.stop.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    self.size = len(r.read())
                self.done += 1
            except OSError:
                self.failed += 1


def _share(cpu: float | None, elapsed: float) -> float | None:
    return None if cpu is None or elapsed <= 0 else cpu / elapsed


def _trial_json(res: TrialResult, latency: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "offered_pps": round(res.offered_pps), "sent": res.sent, "received": res.received,
        "loss": round(res.loss, 6), "sent_pps": round(res.sent_pps),
        "received_pps": round(res.received / res.elapsed_s) if res.elapsed_s else 0,
        "duration_s": round(res.elapsed_s, 3),
        "relay_cpu": _round(_share(res.relay_cpu_s, res.elapsed_s)),
        "sender_cpu": _round(_share(res.sender_cpu_s, res.elapsed_s)),
        "receiver_cpu": _round(_share(res.receiver_cpu_s, res.elapsed_s)),
        "other_processes_cpu": _round(res.others_cpu),
    }
    if res.gen_dropped:
        out["sender_dropped"] = res.gen_dropped
    if latency:
        out["samples"] = len(res.latencies_ns)
        for q in (50, 99):
            value = res.percentile_ms(q)
            out[f"p{q}_ms"] = round(value, 4) if value is not None else None
        if res.latencies_ns:
            out["max_ms"] = round(max(res.latencies_ns) / 1e6, 3)
    return out


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def _coturn_version(logfile: Path) -> str | None:
    with contextlib.suppress(OSError):
        for line in logfile.read_text(errors="replace").splitlines():
            if line.startswith("Version Coturn"):
                return line.split()[1]
    return None


# -- report ------------------------------------------------------------------------------------

def aims(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def get(name: str, key: str) -> Any:
        return results.get(name, {}).get(key)

    out = []

    def aim(text: str, value: Any, ok: bool | None) -> None:
        out.append({"aim": text, "value": value, "met": ok})

    fp, tc = get("fastpath", "max_pps"), get("coturn", "max_pps")
    ratio = fp / tc if fp is not None and tc else None
    aim("(a) fastpath rate >= coturn's", None if ratio is None else f"{ratio:.2f}x coturn",
        None if ratio is None else ratio >= 1)
    p99 = get("fastpath", "added_p99_ms")
    aim("(a) fastpath added p99 < 1 ms", None if p99 is None else f"{p99:.3f} ms",
        None if p99 is None else p99 < 1)
    # metrics cost nothing on the fast path: the scrape reads counters kept anyway. Within
    # noise: the search ends within its tolerance (5%) of the true rate, and runs differ
    fm = get("fastmetrics", "max_pps")
    ratio_m = fm / tc if fm is not None and tc else None
    if fm is not None and fp:
        aim("(a) + metrics scraped every second: rate within noise of (a)",
            f"{fm / fp:.2f}x (a)" + ("" if ratio_m is None else f", {ratio_m:.2f}x coturn"),
            fm / fp >= METRICS_NOISE)
    ed, nv = get("edge", "max_pps"), get("naive", "max_pps")
    ratio = ed / nv if ed is not None and nv else None
    aim("(b) edge rate >= 3x naive (d)", None if ratio is None else f"{ratio:.2f}x naive",
        None if ratio is None else ratio >= 3)
    p99 = get("edge", "added_p99_ms")
    aim("(b) edge added p99 < 5 ms", None if p99 is None else f"{p99:.3f} ms",
        None if p99 is None else p99 < 5)
    over = get("edge", "overload")
    p99 = over.get("p99_ms") if over else None
    aim("(b) edge p99 at 1.5x its max < 20 ms",
        None if p99 is None else f"{p99:.3f} ms (loss {100 * over['loss']:.1f}%)",
        None if p99 is None else p99 < 20)
    return out


def table(results: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    tc = results.get("coturn", {}).get("max_pps")
    head = ("relay", "max pps", "vs coturn", "p50 ms", "p99 ms", "added p50", "added p99",
            "relay CPU @max", "gen CPU @max")
    rows = [head]

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for name in RELAYS:
        r = results.get(name)
        if r is None:
            if name in skipped:
                rows.append((LABELS[name], "skipped", *[""] * (len(head) - 2)))
            continue
        if "error" in r:
            rows.append((LABELS[name], "error", *[""] * (len(head) - 2)))
            continue
        lat = r.get("latency") or {}
        best = r.get("max_trial") or {}
        cpu = best.get("relay_cpu")
        gen = (best.get("sender_cpu") or 0) + (best.get("receiver_cpu") or 0)
        star = "*" if lat.get("above_max_rate") else ""
        rows.append((LABELS[name] + star, f"{r['max_pps']:,}",
                     f"{r['max_pps'] / tc:.2f}x" if tc else "-",
                     ms(lat.get("p50_ms")), ms(lat.get("p99_ms")),
                     ms(r.get("added_p50_ms")) if name != "direct" else "",
                     ms(r.get("added_p99_ms")) if name != "direct" else "",
                     "-" if cpu is None else f"{cpu:.0%}", f"{gen:.0%}" if best else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    over = results.get("edge", {}).get("overload")
    if over:
        lines.append(f"{'(b) edge at 1.5x max':<{widths[0]}}  {over['offered_pps']:,} pps "
                     f"offered, {over['received_pps']:,}/s arrive (loss "
                     f"{100 * over['loss']:.1f}%), p50 {ms(over.get('p50_ms'))} ms, "
                     f"p99 {ms(over.get('p99_ms'))} ms")
    if any((r.get("latency") or {}).get("above_max_rate") for r in results.values()):
        lines.append(f"* latency measured at {LATENCY_PPS:,} pps, above this relay's max rate "
                     "(so overloaded)")
    lines.append("")
    for name in RELAYS:
        r = results.get(name)
        if r is None and name in skipped:
            lines.append(f"{LABELS[name]}: skipped: {skipped[name]}")
        elif r is not None and "error" in r:
            lines.append(f"{LABELS[name]}: error: {r['error']}")
        elif r is not None:
            lines.append(f"{LABELS[name]}: limited by {r['limited_by']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--quick", action="store_true", help="short trials (smoke test)")
    parser.add_argument("--only", default=",".join(RELAYS),
                        help="comma-separated relays (a=fastpath b=edge c=coturn d=naive); "
                             "direct always runs as the latency baseline")
    parser.add_argument("--duration", type=float, help="seconds per max-rate trial "
                        "(default 2, 0.4 with --quick)")
    parser.add_argument("--latency-duration", type=float,
                        help="seconds of the latency and overload runs (default 3, 1 quick)")
    parser.add_argument("--coarse-clock", action="store_true",
                        help="QUIC clients use uvloop's millisecond clock (for comparison)")
    parser.add_argument("--no-wakeup-limit", action="store_true",
                        help="let idle cores halt (by default the run holds the CPU wake-up "
                             "latency limit at 0 us, so idle cores poll)")
    parser.add_argument("--plain-quic-clients", action="store_true",
                        help="QUIC clients send and receive datagrams through aioquic only "
                             "(congestion-controlled, paced), without their fast paths")
    args = parser.parse_args(argv)
    aliases = {"a": "fastpath", "b": "edge", "c": "coturn", "d": "naive"}
    selected = {aliases.get(x.strip(), x.strip()) for x in args.only.split(",") if x.strip()}
    unknown = selected - set(RELAYS)
    if unknown:
        parser.error(f"unknown relay(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(RELAYS)} (or a, b, c, d)")
    selected.add("direct")
    quick = args.quick
    settings = Settings(duration=args.duration or (0.4 if quick else 2.0),
                        latency_duration=args.latency_duration or (1.0 if quick else 3.0),
                        tolerance=0.25 if quick else 0.05, max_trials=5 if quick else 10,
                        grace=0.2 if quick else 0.3, fine_clock=not args.coarse_clock,
                        fast_quic=not args.plain_quic_clients)

    if len(os.sched_getaffinity(0)) < 2 or RELAY_CPU not in os.sched_getaffinity(0):
        log(f"warning: CPU {RELAY_CPU} is not available; the relay and the generator share "
            "a core")
    pin(GEN_CPU)
    others = other_processes()
    if others:
        log("note: other relay/skymesh processes are running (the machine is not quiet):")
        for line in others:
            log(f"  {line}")
    limits = raise_buffer_limits()
    loadavg = os.getloadavg()
    before = cpu_by_process({os.getpid()})
    time.sleep(1.0)
    busy = sum(v - before.get(pid, 0.0) for pid, v in cpu_by_process({os.getpid()}).items())
    if busy >= 0.05:
        log(f"note: the machine is not quiet: other processes used {busy:.0%} of a CPU in the "
            "last second; results will be skewed")
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    with (tempfile.TemporaryDirectory(prefix="skymesh-bench-") as tmp,
          cpu_wakeup_limit(None if args.no_wakeup_limit else 0) as wakeup_limit):
        bench = Bench(settings, Path(tmp))
        for name in RELAYS:
            if name not in selected:
                continue
            try:
                results[name] = bench.run_relay(name, results.get("direct"))
            except Skip as e:
                skipped[name] = str(e)
                log(f"{LABELS[name]}: skipped: {e}")
            except (GeneratorError, OSError) as e:
                results[name] = {"relay": name, "label": LABELS[name], "error": str(e)}
                log(f"{LABELS[name]}: error: {e}")
                logfile = Path(tmp) / f"{name}.log"
                if logfile.exists():
                    tail = logfile.read_text(errors="replace").strip().splitlines()[-5:]
                    for line in tail:
                        log(f"  {name}.log: {line}")
            if name == "direct" and "max_pps" in results[name]:
                bench.ceiling = results[name]["max_pps"]
                log(f"generator ceiling (direct): {bench.ceiling:,} pps")
    report = {
        "packet_bytes": PACKET_SIZE, "quic_datagram_payload": QUIC_PAYLOAD,
        "relay_cpu": RELAY_CPU, "generator_cpu": GEN_CPU, "max_loss": MAX_LOSS,
        "trial_s": settings.duration, "latency_pps": LATENCY_PPS,
        "latency_s": settings.latency_duration, "quick": quick,
        "quic_fine_clock": settings.fine_clock, "quic_fast_paths": settings.fast_quic,
        "socket_limits": limits, "cpu_wakeup_limit": wakeup_limit,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_before": loadavg, "other_processes": others,
        "others_cpu_before": round(busy, 3),
        "wall_s": round(time.monotonic() - t0, 1),
        "relays": results, "skipped": skipped, "aims": aims(results),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(table(results, skipped))
    print()
    for a in report["aims"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[a["met"]]
        print(f"{a['aim']}: {a['value'] or '-'} [{mark}]")
    print(f"\n{PACKET_SIZE}-byte packets; relay on CPU {RELAY_CPU}, generators on CPU "
          f"{GEN_CPU}; max rate: loss < {100 * MAX_LOSS:g}% in {settings.duration:g} s trials; "
          f"latency at {LATENCY_PPS:,} pps for {settings.latency_duration:g} s; CPU wake-up "
          f"limit {wakeup_limit}; {report['wall_s']} s")
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly cleanup as Ctrl-C


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; relays and generators stopped")
        sys.exit(130)
