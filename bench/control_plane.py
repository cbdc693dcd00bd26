"""Control-plane benchmark: how the controller scales with the number of relays.

    python bench/control_plane.py [--sizes 50,100,200,300,1000] [--quick] [--json]
        [--protocol auto|1|2] [--baseline REV_OR_DIR | --no-baseline] [--baseline-max N]
        [--baseline-all] [--baseline-timeout S] [--timeout S] [--steady S] [--changes N]
        [--insecure] [--keep]

For each size N: a synthetic catalogue of N regions (ids r0001..., pseudo-random places over
the populated latitudes, seeded), the real controller (`python -m skymesh controller`, the
code under test on PYTHONPATH) pinned to CPU 0, and N emulated relays (bench/emurelay.py: the
relay's side of the wire contract, links measured by arithmetic) in load-generator processes
of --per-process relays each, pinned to the other CPUs. Mutual TLS as in production: a CA,
the controller's, an admin viewer's and every relay's certificate, issued once per run.

Measured, per size and code:

  converged_s  from the first relay's session until `admin status` says converged (every
               relay measured its links and holds the current routes)
  cpu_pct      the controller's CPU over --steady seconds once converged (beyond the
               partial-mesh size, once steady: the links the controller holds stopped
               growing, every pair sampled, and no table came for 5 s), % of one core
               (/proc/PID/stat), and its RSS: now and peak (VmRSS, VmHWM)
  reports/s, samples/s  what the relays sent over that time (link reports and the link
               samples in them), and the controller's own counters where status has them
  push         --changes times: the link that the most rows use as their next hop gets 3x
               its RTT at its source relay, which reports it at once; from that report's send
               time to the route table (acknowledged on arrival) that moved the routes of
               every affected relay, until no table came for 2 s: a relay with rows whose
               path took the link, the first table that changed one of those rows' path or
               backup; and every relay that got a table of the round that took the change in
               (the lowest version among those tables), whose backups moved. Then the link
               is restored and settles. p50/p99 over those relays' times, and how many there
               were. Each change's line also shows the last table of any relay until quiet
               (rounds on measurement noise after the change's included)
  admin_p50_ms `admin status` latency while steady, one call every 0.5 s; and (busy)
               every 0.25 s while the link changes are computed and pushed

The same for the code before the change (--baseline: a directory, or a revision checked out
with `git worktree add --detach`; default 7c715a2), whose relays speak protocol 1, up to
--baseline-max relays (its convergence waits at most --baseline-timeout; past it the figures
that need convergence are left out and the rest measured under its load). The aims (the
issue's) are judged at 300 and 1000 relays. Progress goes to stderr; --json prints the
results on stdout instead of the table. Exits 0 even when an aim is missed: it is a report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/relay.py must not shadow the `relay` package: drop the script's directory from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from skymesh import certs, identity  # noqa: E402
from skymesh.countries import ISO_ALPHA2  # noqa: E402
from skymesh.linkstate import (  # noqa: E402
    LINK,
    PROTOCOL_BY_CHANGE,
    PROTOCOL_FULL,
    PROTOCOL_RESYNC,
    PROTOCOL_TABLE_CHANGES,
)
from skymesh.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402

SIZES = (50, 100, 200, 300, 1000)
QUICK_SIZES = (50, 100)
BASELINE_REV = "7c715a2"
BASELINE_MAX = 200  # beyond it the baseline never converges (by hand: 300 never did)
AIMS: dict[int, dict[str, float]] = {
    300: {"converged_s": 30.0, "cpu_pct": 50.0, "push_p99_ms": 1000.0},
    1000: {"converged_s": 90.0, "push_p99_ms": 2000.0},
}
CHANGE_FACTOR = 3.0
QUIET_S = 2.0  # a push is over when no relay got a table for this long
FIRST_TABLE_S = 10.0  # ... or, when none came at all, after this long
MAX_PUSH_S = 30.0  # pushes that go on longer are the background's (churn), not the change's
STATUS_EVERY_S = 0.5
SETTLED_QUIET_S = 5.0
SETTLED_GROWTH = 0.001  # of the links the controller holds, over SETTLED_QUIET_S
SETTLE_S = 240.0
PARTIAL_MESH_ABOVE = LINK.partial_mesh_above
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


# -- inputs ----------------------------------------------------------------------------------


def make_catalogue(base: Path, n: int, seed: int) -> tuple[Path, Path]:
    """N region files (as regions/*.yaml) and the JSON the emulators read: (dir, json)."""
    import random

    directory = base / f"regions-{n}"
    data = base / f"regions-{n}.json"
    if data.exists():
        return directory, data
    directory.mkdir(parents=True)
    rng = random.Random(f"control-plane:{seed}")
    countries = sorted(ISO_ALPHA2)
    regions = []
    for i in range(1, n + 1):
        rid = f"r{i:04d}"
        # most people (and data centres) live between 40 S and 62 N
        lat, lon = round(rng.uniform(-40.0, 62.0), 4), round(rng.uniform(-180.0, 180.0), 4)
        country = rng.choice(countries)
        (directory / f"{rid}.yaml").write_text(
            f"id: {rid}\nname: Region {i:04d}\ncountry: \"{country}\"\nlat: {lat}\n"
            f"lon: {lon}\ntags: [bench]\nprovider: {{bench: emulated}}\n"
            f"capacity: {{relays: 1, gbps: 10}}\n")
        regions.append({"id": rid, "lat": lat, "lon": lon})
    data.write_text(json.dumps({"seed": seed, "regions": regions}))
    return directory, data


class Certificates:
    """The run's CA and the certificates issued under it, issued once (kept under the run's
    temporary directory for every size and both codes)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        certs.create_ca(directory)
        self.mesh = certs.mesh_of(certs.load_cert(directory / certs.CA_CERT))
        self.controller = self._issue(identity.controller(self.mesh, "bench"),
                                      ["127.0.0.1", "localhost"])
        self.admin = self._issue(identity.admin(self.mesh, "bench", "viewer"), [])
        self.relays: set[str] = set()

    def _issue(self, who: identity.Identity, hosts: list[str]) -> tuple[Path, Path]:
        return certs.issue_identity(self.dir, self.dir, who, hosts)

    def relays_for(self, regions: list[str]) -> None:
        missing = [r for r in regions if r not in self.relays]
        if missing:
            t = time.monotonic()
            for rid in missing:
                self._issue(identity.relay(self.mesh, rid, "n1"), [])
                self.relays.add(rid)
            say(f"  issued {len(missing)} relay certificates in {time.monotonic() - t:.1f} s")

    @property
    def bundle(self) -> Path:
        return self.dir / certs.BUNDLE


@dataclass
class Code:
    """A version of skymesh to run the controller of."""

    name: str  # ours | baseline
    root: Path
    protocol: int  # what its relays speak
    tls: bool  # it takes the mutual TLS options

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root), "PYTHONUNBUFFERED": "1"}


def speaks(root: Path) -> int:
    """The newest protocol the controller of the code at `root` knows: 4, sessions carried
    over to a new leader; 3, route tables by change; 2, reports by change; else 1."""
    code = "".join(p.read_text(errors="replace") for p in (root / "controller").glob("*.py"))
    for name, number in (("PROTOCOL_RESYNC", PROTOCOL_RESYNC),
                         ("PROTOCOL_TABLE_CHANGES", PROTOCOL_TABLE_CHANGES),
                         ("PROTOCOL_BY_CHANGE", PROTOCOL_BY_CHANGE)):
        if name in code:
            return number
    return PROTOCOL_FULL


def takes_tls(root: Path) -> bool:
    done = subprocess.run([sys.executable, "-m", "skymesh", "controller", "--help"],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=60)
    return "--cert" in done.stdout


def baseline_code(given: str) -> Path:
    """The baseline's source tree: `given` if it is a directory, else revision `given`
    checked out (once) as a detached worktree beside the system's temporary files."""
    if Path(given).is_dir():
        return Path(given).resolve()
    if not re.fullmatch(r"[0-9A-Za-z._/-]{1,64}", given):
        raise ValueError(f"--baseline {given!r}: neither a directory nor a revision")
    where = Path(tempfile.gettempdir()) / f"skymesh-base-{given.replace('/', '_')}"
    if not (where / "skymesh" / "__main__.py").exists():
        say(f"checking out the baseline {given} in {where}")
        done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                               str(where), given], capture_output=True, text=True)
        if done.returncode != 0:
            raise ValueError(f"git worktree add {where} {given}: {done.stderr.strip()}")
    return where


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpus:
    controller: set[int]
    generators: set[int]

    @classmethod
    def layout(cls) -> Cpus:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(set(cpus), set(cpus))
        return cls({cpus[0]}, set(cpus[1:]))

    @property
    def shared(self) -> bool:
        return bool(self.controller & self.generators)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(argv: list[str], cpus: set[int]) -> list[str]:
    if shutil.which("taskset"):
        return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    return argv


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds every CPU of the machine spent busy (all but idle and iowait)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class ControllerProcess:
    def __init__(self, code: Code, regions: Path, tls: Certificates | None, cpus: set[int],
                 log: Path) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "skymesh", "controller", "--regions", str(regions),
                "--listen", self.address, "--log-level", "info"]
        if tls is None:
            argv.append("--insecure")
        else:
            argv += ["--ca", str(tls.bundle), "--cert", str(tls.controller[0]),
                     "--key", str(tls.controller[1])]
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(pinned(argv, cpus), cwd=code.root, env=code.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

    def wait_listening(self, timeout: float = 120.0) -> None:
        host, _, port = self.address.rpartition(":")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the controller did not listen within {timeout:.0f} s")

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the controller exited ({self.proc.returncode}):\n{tail}")

    def stop(self) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Generator:
    """One load-generator process of emulated relays and its command pipe."""

    def __init__(self, argv: list[str], log: Path) -> None:
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                                         start_new_session=True)
        self.log = log
        self.buffer = b""
        self.regions: list[str] = []

    def read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise RuntimeError(f"load generator {self.proc.pid} did not answer in "
                                       f"{timeout:.0f} s (log {self.log})")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"load generator {self.proc.pid} exited:\n{tail}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, cmd: dict, timeout: float = 60.0) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        reply = self.read(timeout)
        if "error" in reply:
            raise RuntimeError(f"load generator: {reply['error']}")
        return reply

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop(self.proc)


class Generators:
    def __init__(self, regions: list[str], data: Path, controller: str, protocol: int,
                 tls: Certificates | None, cpus: set[int], per_process: int, ramp_s: float,
                 logs: Path) -> None:
        self.gens: list[Generator] = []
        self.owner: dict[str, Generator] = {}
        count = max(1, math.ceil(len(regions) / per_process))
        for i in range(count):
            mine = regions[i::count]
            argv = [sys.executable, "-m", "bench.emurelay", "--controller", controller,
                    "--regions", str(data), "--serve", ",".join(mine),
                    "--protocol", str(protocol), "--ramp", str(ramp_s)]
            argv += ["--insecure"] if tls is None else ["--certs", str(tls.dir)]
            for cpu in sorted(cpus):
                argv += ["--cpu", str(cpu)]
            gen = Generator(argv, logs / f"emurelay-{i}.log")
            gen.regions = mine
            self.gens.append(gen)
            self.owner.update(dict.fromkeys(mine, gen))
        for gen in self.gens:
            gen.read(120.0)  # {"ready": n}

    @property
    def pids(self) -> list[int]:
        return [g.proc.pid for g in self.gens]

    def ask_all(self, cmd: dict, timeout: float = 60.0) -> list[dict]:
        for gen in self.gens:  # every process works on it at once
            assert gen.proc.stdin is not None
            gen.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
            gen.proc.stdin.flush()
        replies = [gen.read(timeout) for gen in self.gens]
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(f"load generator: {reply['error']}")
        return replies

    def stats(self) -> dict[str, Any]:
        replies = self.ask_all({"cmd": "stats"})
        total: dict[str, Any] = {}
        for key in ("relays", "connected", "disconnects", "failed_sessions", "reports",
                    "full_reports", "samples", "bytes", "tables", "peer_lists"):
            total[key] = sum(r[key] for r in replies)
        firsts = [r["first_connect"] for r in replies if r["first_connect"]]
        total["first_connect"] = min(firsts) if firsts else None
        late = [r["late_p99_ms"] for r in replies if r["late_p99_ms"] is not None]
        total["late_p99_ms"] = max(late) if late else None
        late = [r["late_max_ms"] for r in replies if r["late_max_ms"] is not None]
        total["late_max_ms"] = max(late) if late else None
        return total

    def arrivals(self, since: float) -> dict[str, list[list[float]]]:
        out: dict[str, list] = {}
        for reply in self.ask_all({"cmd": "arrivals", "since": since}):
            out.update(reply["arrivals"])
        return out

    def busiest_links(self, k: int = 3) -> list[tuple[str, str, int]]:
        rows = [tuple(r) for reply in self.ask_all({"cmd": "top", "k": k}, timeout=120.0)
                for r in reply["top"]]
        return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))

    def watch(self, src: str, dst: str, since: float) -> int:
        """Every relay notes its first table from `since` on that moves a row whose path
        takes src->dst; how many relays have such rows."""
        return sum(reply["traversing"] for reply in self.ask_all(
            {"cmd": "watch", "src": src, "dst": dst, "since": since}, timeout=120.0))

    def moved(self) -> dict[str, tuple[float, int]]:
        """What `watch` noted: {relay: (arrival unix time, version) of that table}."""
        out: dict[str, tuple[float, int]] = {}
        for reply in self.ask_all({"cmd": "moved"}, timeout=120.0):
            out.update({rid: (t, v) for rid, (t, v) in reply["moved"].items()})
        return out

    def change(self, src: str, dst: str, factor: float) -> float:
        return self.owner[src].ask({"cmd": "change", "src": src, "dst": dst,
                                    "factor": factor})["sent"]

    def stop(self) -> None:
        for gen in self.gens:
            gen.stop()


class Admin:
    """`admin status` over one channel, as an admin viewer."""

    def __init__(self, address: str, tls: Certificates | None) -> None:
        if tls is None:
            self.channel = grpc.insecure_channel(address)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls.bundle.read_bytes(),
                private_key=tls.admin[1].read_bytes(),
                certificate_chain=tls.admin[0].read_bytes())
            self.channel = grpc.secure_channel(address, creds)
        self.stub = admin_pb2_grpc.AdminStub(self.channel)

    def status(self, timeout: float = 10.0) -> tuple[admin_pb2.StatusReply | None, float]:
        """(the reply or None when it did not come, seconds it took)."""
        t = time.perf_counter()
        try:
            reply = self.stub.Status(admin_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            reply = None
        return reply, time.perf_counter() - t

    def close(self) -> None:
        self.channel.close()


def status_extra(reply: admin_pb2.StatusReply) -> dict[str, Any]:
    """Numbers the status has beyond those this bench knows (the controller's own counts of
    what it processed, where it gives them)."""
    out = {}
    for desc, value in reply.ListFields():
        if desc.name not in ("relays", "regions", "route_version", "converged", "links_up",
                             "links_measured", "links_expected", "relays_acked", "uptime_s",
                             "converged_for_s", "refused"):
            if isinstance(value, int | float):
                out[desc.name] = value
    return out


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Settings:
    steady_s: float
    changes: int
    timeout_s: float
    baseline_timeout_s: float
    per_process: int
    ramp_s: float
    cpus: Cpus
    logs: Path
    settle_s: float = SETTLE_S


@dataclass
class Result:
    n: int
    code: str
    protocol: int
    tls: bool
    converged_s: float | None = None
    waited_s: float = 0.0
    # a partial mesh's first samples of every other pair come in for a while after it
    # converged (on its nearest regions): how long until routes stopped moving, if they did
    settled_s: float | None = None
    links_measured: int = 0
    links_expected: int = 0
    cpu_pct: float | None = None
    rss_mb: float | None = None
    rss_peak_mb: float | None = None
    reports_per_s: float | None = None
    samples_per_s: float | None = None
    tables_per_s: float | None = None
    bytes_per_s: float | None = None
    admin_p50_ms: float | None = None
    admin_p99_ms: float | None = None
    # `admin status` while routes are computed and pushed after the link changes
    admin_busy_p50_ms: float | None = None
    admin_busy_p99_ms: float | None = None
    admin_failed: int = 0
    push_p50_ms: float | None = None
    push_p99_ms: float | None = None
    push_relays: int = 0
    pushes: list[dict] = field(default_factory=list)
    generator_cpu_pct: float | None = None
    generator_late_p99_ms: float | None = None
    others_cpu_pct: float | None = None  # the rest of the machine, % of one core
    disconnects: int = 0
    failed_sessions: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    controller_counts: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    aims: dict[str, bool] = field(default_factory=dict)


def run_one(n: int, code: Code, catalogue: tuple[Path, Path], tls: Certificates | None,
            s: Settings) -> Result:
    result = Result(n, code.name, code.protocol, tls is not None)
    regions_dir, data = catalogue
    regions = [f"r{i:04d}" for i in range(1, n + 1)]
    tag = f"{n}-{code.name}"
    ctl = ControllerProcess(code, regions_dir, tls, s.cpus.controller,
                            s.logs / f"controller-{tag}.log")
    gens: Generators | None = None
    admin: Admin | None = None
    try:
        ctl.wait_listening()
        admin = Admin(ctl.address, tls)
        logs = s.logs / tag
        logs.mkdir(exist_ok=True)
        started = time.time()
        gens = Generators(regions, data, ctl.address, code.protocol, tls, s.cpus.generators,
                          s.per_process, s.ramp_s, logs)
        timeout = s.timeout_s if code.name == "ours" else s.baseline_timeout_s
        converged_at = wait_converged(ctl, admin, gens, started, timeout, result, say)
        first = gens.stats()["first_connect"] or started
        if converged_at is None:
            result.waited_s = round(time.time() - first, 1)
        else:
            result.converged_s = round(converged_at - first, 2)
        if converged_at is not None and n > PARTIAL_MESH_ABOVE:
            settle(gens, admin, converged_at, s.settle_s, result)
        steady(ctl, admin, gens, s, result)
        if converged_at is not None and s.changes:
            push_latency(gens, s.changes, result, admin)
        result.rss_peak_mb = round(memory_mb(ctl.pid).get("VmHWM", 0.0), 1)
        ctl.check()
    except (RuntimeError, OSError, ValueError) as e:
        result.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        say(f"  {tag}: {e}")
    finally:
        if admin is not None:
            admin.close()
        if gens is not None:
            gens.stop()
        ctl.stop()
    return result


def wait_converged(ctl: ControllerProcess, admin: Admin, gens: Generators, started: float,
                   timeout: float, result: Result, report: Callable[[str], None]
                   ) -> float | None:
    """The unix time the controller became converged, or None when it was not within
    `timeout` s of the first relay's session (or of `started`, if none came)."""
    shown = 0.0
    first: float | None = None
    while True:
        ctl.check()
        reply, _ = admin.status()
        now = time.time()
        if reply is not None and reply.converged:
            return now - reply.converged_for_s
        if first is None:
            first = gens.stats()["first_connect"]
        if now - (first or started) > timeout:
            report(f"  {result.n} {result.code}: not converged within {timeout:.0f} s")
            return None
        if now - shown >= 5.0 and reply is not None:
            shown = now
            report(f"  {result.n} {result.code}: relays {reply.relays}/{result.n}, links "
                   f"measured {reply.links_measured}/{reply.links_expected}, routes "
                   f"v{reply.route_version} acked by {reply.relays_acked}/{reply.relays} "
                   f"({now - (first or started):.0f} s)")
        time.sleep(STATUS_EVERY_S)


def settle(gens: Generators, admin: Admin, converged_at: float, timeout: float,
           result: Result) -> None:
    """Wait, up to `timeout` s, for the mesh to be steady: beyond the partial-mesh size relays
    sample every other region over their first period, and the routes take in what they
    find for a while after the mesh converged on its nearest regions. Steady: the links the
    controller holds grew by at most SETTLED_GROWTH over SETTLED_QUIET_S (every pair has
    been sampled) and no relay got a table meanwhile. The link changes are measured from a
    steady mesh."""
    start = time.time()

    def links() -> int:
        reply, _ = admin.status(timeout=5.0)
        return reply.links_up if reply is not None else 0

    while time.time() - start < timeout:
        before = links()
        got, _ = wait_quiet(gens, time.time(), first_s=SETTLED_QUIET_S)
        if not got and links() <= before * (1 + SETTLED_GROWTH):
            result.settled_s = round(time.time() - SETTLED_QUIET_S - converged_at, 1)
            say(f"  {result.n} {result.code}: routes settled {result.settled_s} s after "
                f"converging ({before} links held)")
            return
    say(f"  {result.n} {result.code}: routes still moving {timeout:.0f} s after converging")


def steady(ctl: ControllerProcess, admin: Admin, gens: Generators, s: Settings,
           result: Result) -> None:
    """--steady seconds: the controller's CPU and memory, what the relays sent, status."""
    gen_cpu = {pid: cpu_seconds(pid) for pid in gens.pids}
    me, busy = cpu_seconds(os.getpid()), machine_busy_s()
    before, cpu0, t0 = gens.stats(), cpu_seconds(ctl.pid), time.monotonic()
    latencies, failed = [], 0
    replies: list[tuple[float, admin_pb2.StatusReply]] = []
    while (now := time.monotonic()) < t0 + s.steady_s:
        reply, took = admin.status(timeout=5.0)
        if reply is None:
            failed += 1
        else:
            latencies.append(took)
            replies.append((time.monotonic(), reply))
        time.sleep(max(0.0, STATUS_EVERY_S - (time.monotonic() - now)))
    cpu1, t1, after = cpu_seconds(ctl.pid), time.monotonic(), gens.stats()
    span = t1 - t0
    result.cpu_pct = round(100 * (cpu1 - cpu0) / span, 1)
    mem = memory_mb(ctl.pid)
    result.rss_mb = round(mem.get("VmRSS", 0.0), 1)
    result.rss_peak_mb = round(mem.get("VmHWM", 0.0), 1)
    for key, attr in (("reports", "reports_per_s"), ("samples", "samples_per_s"),
                      ("tables", "tables_per_s"), ("bytes", "bytes_per_s")):
        setattr(result, attr, round((after[key] - before[key]) / span, 1))
    result.generator_cpu_pct = round(sum(
        100 * (cpu_seconds(pid) - c) / span for pid, c in gen_cpu.items()), 1)
    # whatever else ran meanwhile (other users' tests, say) skews every figure here
    ours = (cpu1 - cpu0) + (cpu_seconds(os.getpid()) - me) + sum(
        cpu_seconds(pid) - c for pid, c in gen_cpu.items())
    result.others_cpu_pct = round(max(0.0, 100 * (machine_busy_s() - busy - ours) / span), 1)
    result.generator_late_p99_ms = _round(after["late_p99_ms"])
    result.disconnects = after["disconnects"]
    result.failed_sessions = after["failed_sessions"]
    result.admin_p50_ms = _ms(percentile(latencies, 50))
    result.admin_p99_ms = _ms(percentile(latencies, 99))
    result.admin_failed = failed
    if replies:
        (ta, first), (tb, last) = replies[0], replies[-1]
        result.links_measured, result.links_expected = last.links_measured, last.links_expected
        result.refused = dict(last.refused)
        extra = status_extra(last)
        if tb > ta:  # counters over the window, where the status has them
            for key, value in status_extra(first).items():
                if type(value) is int and key in extra and extra[key] >= value:
                    extra[f"{key}_per_s"] = round((extra[key] - value) / (tb - ta), 1)
        result.controller_counts = extra
    say(f"  {result.n} {result.code}: steady {span:.0f} s: controller CPU {result.cpu_pct}%, "
        f"RSS {result.rss_mb} MB, {result.reports_per_s} reports/s, {result.samples_per_s} "
        f"samples/s, admin status p50 {result.admin_p50_ms} ms; load generators "
        f"{result.generator_cpu_pct}% CPU, timers late p99 {result.generator_late_p99_ms} ms; "
        f"other processes {result.others_cpu_pct}% CPU")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def wait_quiet(gens: Generators, since: float, first_s: float = FIRST_TABLE_S,
               admin: Admin | None = None, latencies: list[float] | None = None,
               ) -> tuple[dict[str, list[list[float]]], bool]:
    """The tables that arrived from `since` until none came for QUIET_S (`first_s` when none
    came at all), and whether that quiet came within MAX_PUSH_S. With `admin`, an `admin
    status` call every 0.25 s meanwhile, its latency added to `latencies`."""
    while True:
        if admin is not None and latencies is not None:
            start = time.monotonic()
            reply, took = admin.status(timeout=5.0)
            if reply is not None:
                latencies.append(took)
            time.sleep(max(0.0, 0.25 - (time.monotonic() - start)))
        else:
            time.sleep(0.25)
        got = gens.arrivals(since)
        latest = max((t for rows in got.values() for t, _ in rows), default=None)
        now = time.time()
        if latest is None and now - since >= first_s:
            return got, True
        if latest is not None and now - latest >= QUIET_S:
            return got, True
        if now - since > MAX_PUSH_S:  # a controller that never stops pushing
            return got, False


def push_latency(gens: Generators, changes: int, result: Result,
                 admin: Admin | None = None) -> None:
    used: set[tuple[str, str]] = set()
    samples: list[float] = []
    busy: list[float] = []  # admin status latencies while the changes are computed
    affected = 0
    for i in range(changes):
        candidates = [r for r in gens.busiest_links() if (r[0], r[1]) not in used
                      and (r[1], r[0]) not in used]
        if not candidates:
            break
        src, dst, rows = candidates[0]
        used.add((src, dst))
        # from a calm mesh, so that the tables counted are the change's
        _, calm = wait_quiet(gens, time.time() - QUIET_S, first_s=QUIET_S)
        traversing = gens.watch(src, dst, time.time())
        sent = gens.change(src, dst, CHANGE_FACTOR)
        got, quiet = wait_quiet(gens, sent, admin=admin, latencies=busy)
        # the relays the change moved: a row of theirs that took the link got a new path or
        # backup, and when; and every relay the round that took the change in pushed (the
        # lowest version that moved such a row: one version a round), whose backups moved
        # too. Any table until quiet (the rounds after, on measurement noise too) is shown
        # beside it.
        moved = gens.moved()
        reached = {rid: t for rid, (t, _) in moved.items()}
        if moved:
            round_version = min(v for _, v in moved.values())
            for rid, rows_ in got.items():
                for t, v in rows_:
                    if v == round_version:
                        reached[rid] = max(reached.get(rid, t), t)
        times = sorted(max(0.0, t - sent) for t in reached.values())
        any_table = sorted(max(t for t, _ in rows_) - sent for rows_ in got.values())
        samples += times
        affected += len(times)
        result.pushes.append({"link": f"{src}->{dst}", "rows": rows, "relays": len(times),
                              "traversing": traversing,
                              "p50_ms": _ms(percentile(times, 50)),
                              "max_ms": _ms(times[-1] if times else None),
                              "tables_relays": len(any_table),
                              "tables_max_ms": _ms(any_table[-1] if any_table else None),
                              "calm_before": calm, "quiet_after": quiet})
        say(f"  {result.n} {result.code}: change {i + 1}: {src}->{dst} (next hop of {rows} "
            f"rows, {traversing} relays' paths take it) x{CHANGE_FACTOR:g}: {len(moved)} "
            f"relays' paths moved, {len(times)} relays' routes in all, the last after "
            f"{_ms(times[-1]) if times else '-'} ms; "
            f"{len(any_table)} relays got tables until quiet, the last after "
            f"{_ms(any_table[-1]) if any_table else '-'} ms"
            + ("" if calm and quiet else " (tables kept coming: background pushes)"))
        restored = gens.change(src, dst, 1.0)
        wait_quiet(gens, restored)
    result.push_p50_ms = _ms(percentile(samples, 50))
    result.push_p99_ms = _ms(percentile(samples, 99))
    result.push_relays = affected
    result.admin_busy_p50_ms = _ms(percentile(busy, 50))
    result.admin_busy_p99_ms = _ms(percentile(busy, 99))


def judge(result: Result) -> None:
    aims = AIMS.get(result.n)
    if not aims:
        return
    got = {"converged_s": result.converged_s, "cpu_pct": result.cpu_pct,
           "push_p99_ms": result.push_p99_ms}
    result.aims = {key: got[key] is not None and got[key] < limit for key, limit in aims.items()}


# -- output ----------------------------------------------------------------------------------


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(results: list[Result], settings: dict[str, Any]) -> str:
    head = ["N", "links", "code", "proto", "converged_s", "cpu_%", "rss_mb", "reports/s",
            "samples/s", "push_p50/p99_ms (relays)", "admin_p50_ms", "admin_busy_p50/p99_ms",
            "aims"]
    rows = []
    for r in results:
        if r.converged_s is not None:
            converged = _f(r.converged_s, 1)
        elif r.error and not r.waited_s:
            converged = "error"
        else:
            converged = f"not within {settings['timeouts'][r.code]:.0f} s"
        push = "-" if r.push_p50_ms is None else \
            f"{r.push_p50_ms:.0f}/{r.push_p99_ms:.0f} ({r.push_relays})"
        aims = " ".join(f"{k.split('_')[0]}:{'PASS' if ok else 'MISS'}"
                        for k, ok in r.aims.items()) or "-"
        rss = "-" if r.rss_peak_mb is None else f"{r.rss_mb:.0f} ({r.rss_peak_mb:.0f})"
        counts = r.controller_counts
        reports, samples = _f(r.reports_per_s), _f(r.samples_per_s)
        if "reports_per_s" in counts:
            reports += f" ({counts['reports_per_s']:.0f})"
        if "samples_per_s" in counts:
            samples += f" ({counts['samples_per_s']:.0f})"
        rows.append([str(r.n), str(r.links_measured), r.code, str(r.protocol), converged,
                     _f(r.cpu_pct), rss, reports, samples, push, _f(r.admin_p50_ms, 1),
                     "-" if r.admin_busy_p50_ms is None else
                     f"{r.admin_busy_p50_ms:.0f}/{r.admin_busy_p99_ms:.0f}", aims])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [head, *rows]]
    notes = [
        "",
        "links: measured links the controller holds; cpu_%: controller, of one core, while "
        "steady; rss_mb: now (peak); reports/s, samples/s: sent by the relays (taken in, by "
        "the controller's count); push: 3x RTT on the busiest next-hop link, report to the "
        "table that moved the routes of every relay whose paths took it, and of every "
        "relay the change's round pushed, "
        f"{settings['changes']} changes; admin: "
        "`admin status` latency while steady, and (busy) while the changes are computed "
        "and pushed",
        "aims: " + "; ".join(
            f"N={n}: " + ", ".join(f"{k} < {v:g}" for k, v in a.items()) for n, a in AIMS.items()),
        f"controller on CPU {sorted(settings['cpus']['controller'])}, load generators on CPU "
        f"{sorted(settings['cpus']['generators'])}; "
        + ("mutual TLS" if settings["tls"] else "plaintext (--insecure)"),
    ]
    for r in results:
        if r.error:
            notes.append(f"{r.n} {r.code}: {r.error}")
        if r.generator_cpu_pct is not None and r.generator_cpu_pct > 80 * max(
                1, len(settings["cpus"]["generators"])):
            notes.append(f"{r.n} {r.code}: load generators at {r.generator_cpu_pct:.0f}% CPU: "
                         "they may be the limit")
        if r.others_cpu_pct is not None and r.others_cpu_pct > 10:
            notes.append(f"{r.n} {r.code}: other processes used {r.others_cpu_pct:.0f}% of a "
                         "core while steady: the machine was busy, the figures are skewed")
        if any(not (p["calm_before"] and p["quiet_after"]) for p in r.pushes):
            notes.append(f"{r.n} {r.code}: route tables kept coming without any change "
                         f"({r.tables_per_s} tables/s while steady): a table the background "
                         "sent may have moved an affected relay's rows first")
        if r.failed_sessions:
            notes.append(f"{r.n} {r.code}: {r.failed_sessions} relay sessions ended before the "
                         "controller took them (retried with backoff, as relays do)")
    return "\n".join(lines + notes)


# -- main ------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("sizes: relays per run, each at least 2")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=parse_sizes, help="relays per run (default: "
                   f"{','.join(map(str, SIZES))}; --quick: {','.join(map(str, QUICK_SIZES))})")
    p.add_argument("--quick", action="store_true", help="fewer sizes, shorter phases")
    p.add_argument("--json", action="store_true", help="results as JSON on stdout")
    p.add_argument("--protocol", default="auto", choices=("auto", "1", "2", "3"),
                   help="what the relays speak to the code under test (auto: the newest its "
                   "controller knows); the baseline's always speak 1")
    p.add_argument("--baseline", default=BASELINE_REV, metavar="REV_OR_DIR",
                   help="the code before the change: a source tree, or a revision to check "
                   "out as a git worktree (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--baseline-max", type=int, default=BASELINE_MAX, metavar="N",
                   help="run the baseline only up to this many relays (default: %(default)s)")
    p.add_argument("--baseline-all", action="store_true", help="run it at every size")
    p.add_argument("--baseline-timeout", type=float, default=90.0, metavar="S",
                   help="wait this long for the baseline to converge (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="wait this long for the code under test to converge (default: "
                   "%(default)s)")
    p.add_argument("--steady", type=float, metavar="S",
                   help="steady-state measurement (default: 15, --quick 6)")
    p.add_argument("--changes", type=int, metavar="N",
                   help="link changes for the push latency (default: 5, --quick 3)")
    p.add_argument("--per-process", type=int, default=250, metavar="N",
                   help="emulated relays per load-generator process (default: %(default)s)")
    p.add_argument("--ramp", type=float, default=1.0, metavar="S",
                   help="spread the relays' first connects over this long (default: "
                   "%(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--insecure", action="store_true",
                   help="plaintext gRPC (the controller with --insecure), no certificates")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args(argv)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    steady_s = args.steady if args.steady is not None else (6.0 if args.quick else 15.0)
    changes = args.changes if args.changes is not None else (3 if args.quick else 5)

    cpus = Cpus.layout()
    os.sched_setaffinity(0, cpus.generators)  # the driver's own work stays off the controller
    if cpus.shared:
        say("one CPU only: the controller and the load generators share it")
    protocol = {"1": PROTOCOL_FULL, "2": PROTOCOL_BY_CHANGE,
                "3": PROTOCOL_TABLE_CHANGES}.get(args.protocol) or speaks(ROOT)
    codes = {"ours": Code("ours", ROOT, protocol, True)}
    if not args.no_baseline:
        try:
            base = baseline_code(args.baseline)
            codes["baseline"] = Code("baseline", base, PROTOCOL_FULL, takes_tls(base))
        except (ValueError, OSError, subprocess.SubprocessError) as e:
            say(f"no baseline: {e}")

    tmp = Path(tempfile.mkdtemp(prefix="skymesh-bench-cp-"))
    logs = tmp / "logs"
    logs.mkdir()
    say(f"control-plane bench: sizes {sizes}, relays speak protocol {protocol} to ours"
        f"{', 1 to the baseline ' + str(codes['baseline'].root) if 'baseline' in codes else ''}"
        f"; logs in {logs}")
    tls = None
    if not args.insecure:
        tls = Certificates(tmp / "certs")
    s = Settings(steady_s, changes, args.timeout, args.baseline_timeout, args.per_process,
                 args.ramp, cpus, logs)
    results: list[Result] = []
    try:
        for n in sizes:
            catalogue = make_catalogue(tmp, n, args.seed)
            if tls is not None:
                tls.relays_for([f"r{i:04d}" for i in range(1, n + 1)])
            for code in codes.values():
                if code.name == "baseline" and n > args.baseline_max and not args.baseline_all:
                    say(f"{n} relays: baseline skipped (above --baseline-max "
                        f"{args.baseline_max})")
                    continue
                say(f"{n} relays, {code.name} (protocol {code.protocol})")
                use_tls = tls if code.tls else None
                if tls is not None and not code.tls:
                    say("  this code has no mutual TLS options: plaintext")
                result = run_one(n, code, catalogue, use_tls, s)
                judge(result)
                results.append(result)
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    settings = {"sizes": sizes, "steady_s": steady_s, "changes": changes,
                "change_factor": CHANGE_FACTOR, "tls": tls is not None,
                "timeouts": {"ours": args.timeout, "baseline": args.baseline_timeout},
                "cpus": {"controller": sorted(cpus.controller),
                         "generators": sorted(cpus.generators)},
                "codes": {name: {"root": str(c.root), "protocol": c.protocol, "tls": c.tls}
                          for name, c in codes.items()}}
    if args.json:
        print(json.dumps({"settings": settings, "aims": {str(k): v for k, v in AIMS.items()},
                          "results": [r.__dict__ for r in results]}, indent=1))
    else:
        print(table(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
