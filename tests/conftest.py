"""Fixtures the tests share, and the `processes` marker: every test under integration/ starts
processes (a mesh, the command, a benchmark) and is marked so; `pytest -m "not processes"`
runs the rest in seconds.

Most of them start a mesh: a controller and a dozen relays or more, or a benchmark; they are
also marked `mesh` and run one after another, never two at once (on two cores they would time
each other out). `make test` runs them in one pytest process and everything else (the unit
tests, and the integration tests that start a controller, a relay or etcd: BESIDE) in another,
at the same time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_cli, stop

INTEGRATION = Path(__file__).resolve().parent / "integration"
# integration modules that start a few processes, not a mesh: they run beside the unit tests
BESIDE = {"test_controller_dashboard.py", "test_controller_etcd.py",
          "test_controller_replicas.py", "test_etcd_client.py", "test_etcd_store.py",
          "test_health.py", "test_mtls.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.fspath).resolve()
        if INTEGRATION in path.parents:
            item.add_marker(pytest.mark.processes)
            if path.name not in BESIDE:
                item.add_marker(pytest.mark.mesh)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SKYMESH_HOME so that tests never meet a developer's mesh or each other."""
    path = tmp_path / "home"
    monkeypatch.setenv("SKYMESH_HOME", str(path))
    return path


@pytest.fixture
def start_mesh(home: Path):
    """Start a local mesh with `skymesh up --detach`; always stopped at teardown."""
    started = []

    def start(*args: str, timeout: float = 90, dashboard: bool = False) -> dict:
        """`dashboard`: with the live map `up` starts (a process more), which most tests
        have no use for."""
        started.append(True)
        proc = run_cli("up", "--detach", "--json", "--probe-interval", "0.3", *args,
                       *([] if dashboard else ["--no-dashboard"]), timeout=timeout + 30)
        assert proc.returncode == 0, f"skymesh up failed:\n{proc.stderr}\n{_logs(home)}"
        return json.loads(proc.stdout)

    yield start
    if started:
        run_cli("down", timeout=60)


def _logs(home: Path) -> str:
    out = []
    for log in sorted((home / "logs").glob("*.log")):
        out.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-10:]))
    return "\n".join(out)


@pytest.fixture
def cluster(tmp_path: Path):
    """One etcd member (Debian's etcd-server on free loopback ports, mutual TLS), and a
    controller's client TLS files; stopped at teardown."""
    from support import controller_tls, mesh_ca

    from skymesh import certs
    from skymesh.cli import etcdserver

    ca = mesh_ca(tmp_path / "ca")
    c = etcdserver.start(tmp_path / "etcd", etcdserver.server_tls(tmp_path / "ca", ca,
                                                                   ca / certs.BUNDLE))
    yield c, controller_tls(ca)
    c.stop_all()


@pytest.fixture
def processes():
    """A list to put the processes a test starts in (support.spawn); stopped at teardown."""
    started: list = []
    yield started
    for p in started:
        stop(p)

