"""A local etcd cluster for the local mesh's controller replicas and for the tests: Debian's
`etcd-server` binary (etcd 3.4), each member on loopback ports of its own with mutual TLS for
clients and peers (a server certificate for 127.0.0.1 from the mesh's CA; clients must present
a certificate of the mesh), its data in a directory of its own.

`start` returns once every member answers a status request, or raises EtcdStartError with the
reason and the end of the member's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from etcd3 import etcdrpc

from skymesh import certs
from skymesh.net.tls import TlsFiles

BINARY = "etcd"
START_TIMEOUT_S = 20.0


class EtcdStartError(Exception):
    """The etcd binary is missing or a member did not come up."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EtcdCluster:
    """Members started from `directory` (data, logs, the server certificate)."""

    directory: Path
    tls: TlsFiles  # the members' own: the mesh's trust bundle, the server certificate
    members: list[Member] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """`etcd://...` as `--store` takes it."""
        return "etcd://" + ",".join(self.endpoints)

    def command(self, m: Member, state: str) -> list[str]:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        tls = [str(self.tls.cert), str(self.tls.key), str(self.tls.ca)]
        return [BINARY, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", f"https://{m.endpoint}",
                "--advertise-client-urls", f"https://{m.endpoint}",
                "--listen-peer-urls", m.peer_url,
                "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", f"skymesh-{self.directory.name}",
                "--cert-file", tls[0], "--key-file", tls[1], "--trusted-ca-file", tls[2],
                "--client-cert-auth",
                "--peer-cert-file", tls[0], "--peer-key-file", tls[1],
                "--peer-trusted-ca-file", tls[2], "--peer-client-cert-auth",
                "--logger", "zap", "--log-level", "warn",
                # a local cluster: quick elections, small snapshots
                "--heartbeat-interval", "50", "--election-timeout", "500"]

    def launch(self, m: Member, state: str = "new") -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(m.data_dir, 0o700)
        with open(m.log, "ab") as log:
            m.process = subprocess.Popen(self.command(m, state), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def stop(self, m: Member, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if m.process is None:
            return
        if m.process.poll() is None:
            m.process.send_signal(sig)
            try:
                m.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                m.process.kill()
                m.process.wait()
        m.process = None

    def restart(self, m: Member) -> None:
        """A stopped member back, on its data (it rejoins the cluster it was in)."""
        self.launch(m, "existing" if any(m.data_dir.iterdir()) else "new")

    def stop_all(self) -> None:
        for m in self.members:
            self.stop(m)


def server_tls(directory: Path, ca_dir: Path, bundle: Path) -> TlsFiles:
    """A server certificate for the local members (127.0.0.1, localhost), from the CA in
    `ca_dir`, trusting `bundle` for clients and peers."""
    cert, key = certs.issue_cert(directory, ca_dir, "etcd-server", ["127.0.0.1", "localhost"])
    return TlsFiles(Path(bundle), cert, key)


def start(directory: Path, tls: TlsFiles, members: int = 1,
          wait_tls: TlsFiles | None = None, timeout_s: float = START_TIMEOUT_S) -> EtcdCluster:
    """Start `members` members under `directory` (on free loopback ports) and wait until
    each answers, as `wait_tls` (a client of the mesh; the members' own files when None).
    EtcdStartError if the binary is missing or a member does not come up in time."""
    if shutil.which(BINARY) is None:
        raise EtcdStartError(f"no {BINARY!r} on PATH: install Debian's etcd-server "
                             "(apt-get install etcd-server; `make test` does)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(directory, tls)
    for i in range(members):
        name = f"etcd{i}"
        cluster.members.append(Member(name, free_port(), free_port(), directory / name,
                                      directory / f"{name}.log"))
    for m in cluster.members:
        cluster.launch(m)
    try:
        wait_ready(cluster, wait_tls or tls, timeout_s)
    except EtcdStartError:
        cluster.stop_all()
        raise
    return cluster


def wait_ready(cluster: EtcdCluster, tls: TlsFiles, timeout_s: float) -> None:
    """Until every running member answers a status request over TLS (and a leader is
    elected); EtcdStartError with the member's log if one exits or the time is up."""
    ca, cert, key = tls.read()
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    deadline = time.monotonic() + timeout_s
    for m in cluster.members:
        if m.process is None:
            continue
        with grpc.secure_channel(m.endpoint, creds) as channel:
            stub = etcdrpc.MaintenanceStub(channel)
            while True:
                if m.process.poll() is not None:
                    raise EtcdStartError(f"etcd member {m.name} exited "
                                         f"({m.process.returncode}):\n{tail(m.log)}")
                try:
                    if stub.Status(etcdrpc.StatusRequest(), timeout=1.0).leader:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise EtcdStartError(f"etcd member {m.name} did not answer within "
                                         f"{timeout_s:.0f} s:\n{tail(m.log)}")
                time.sleep(0.1)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
