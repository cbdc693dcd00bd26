"""Helpers the tests share: run the `skymesh` command, wait on a condition with a deadline,
read async iterators, write small catalogues and matrices. (Fixtures are in conftest.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the project


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skymesh", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=os.environ.copy())


def cli_json(*args: str, timeout: float = 30):
    proc = run_cli(*args, "--json", timeout=timeout)
    assert proc.returncode == 0, f"skymesh {' '.join(args)} failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


def try_json(*args: str, timeout: float = 30):
    """The command's JSON, or None when it fails (a process still starting, say)."""
    proc = run_cli(*args, "--json", timeout=timeout)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval=0.1):
    """Poll until predicate() is truthy; returns its value or fails with `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


async def take(aiter, n: int) -> list:
    """The first `n` items of an async iterator."""
    out = []
    async for x in aiter:
        out.append(x)
        if len(out) == n:
            break
    return out


async def take_within(aiter, n: int, timeout: float) -> list:
    """Up to `n` items of an async iterator: those that came within `timeout` seconds (for
    media, which may lose a datagram on a busy machine)."""
    out: list = []

    async def fill() -> None:
        async for x in aiter:
            out.append(x)
            if len(out) == n:
                return
    try:
        await asyncio.wait_for(fill(), timeout)
    except TimeoutError:
        pass
    return out


def write_regions(directory: Path, regions: dict[str, tuple], country: str = "DE") -> Path:
    """Region files from {id: (lat, lon)} or {id: (lat, lon, country)}."""
    directory.mkdir(parents=True, exist_ok=True)
    for rid, (lat, lon, *rest) in regions.items():
        (directory / f"{rid}.yaml").write_text(
            f"id: {rid}\nname: {rid.title()}\ncountry: {rest[0] if rest else country}\n"
            f"lat: {lat}\nlon: {lon}\n")
    return directory


def write_matrix(path: Path, rtts: dict[tuple[str, str], float]) -> Path:
    path.write_text("src,dst,rtt_ms\n" + "".join(f"{a},{b},{r}\n" for (a, b), r in rtts.items()))
    return path


# -- etcd --------------------------------------------------------------------------------

ETCD_MESH = "test-mesh"


def mesh_ca(directory: Path, mesh: str = ETCD_MESH) -> Path:
    """A mesh CA in `directory` (created)."""
    from skymesh import certs

    directory.mkdir(parents=True, exist_ok=True)
    certs.create_ca(directory, mesh=mesh)
    return directory


def controller_tls(ca_dir: Path, name: str = "c1", mesh: str = ETCD_MESH):
    """A controller's TLS files issued by the CA in `ca_dir` (its etcd client identity)."""
    from skymesh import certs, identity
    from skymesh.net.tls import TlsFiles

    cert, key = certs.issue_identity(ca_dir, ca_dir, identity.controller(mesh, name))
    return TlsFiles(ca_dir / certs.BUNDLE, cert, key)


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    """`skymesh ARGS...` as a process of its own, its output appended to `log`."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "skymesh", *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

