"""The local mesh: a controller and one relay process per region on loopback addresses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from skymesh.catalogue import Region
from skymesh.net.tls import TlsFiles

PROJECT_REGIONS = Path(__file__).resolve().parents[2] / "regions"


# Relays measure every link once a second. Emulated on one machine, 45 relays doing so (about
# 8,000 datagrams a second through Python) took most of the 2-core reference machine before
# any traffic; every 2 s halves that. A deployment gives each relay its own host.
MEASURE_EVERY_SECOND_UP_TO = 12


def probe_interval(relays: int) -> float:
    """The local mesh's default interval between measuring probes of every link."""
    return 1.0 if relays <= MEASURE_EVERY_SECOND_UP_TO else 2.0


def home() -> Path:
    """Where the local mesh keeps its state file, logs and WAN model."""
    return Path(os.environ.get("SKYMESH_HOME", "~/.skymesh")).expanduser()


def state_file() -> Path:
    return home() / "mesh.json"


def default_regions_dir() -> Path:
    local = Path("regions")
    return local if local.is_dir() else PROJECT_REGIONS


def relay_address(index: int) -> str:
    """A distinct loopback address per relay: 127.1.0.1, 127.1.0.2, ..."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass
    try:  # nor is anyone's zombie (a container's first process may be slow to reap)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_state() -> dict | None:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def running_state() -> dict | None:
    """The state of a local mesh whose controller still runs, else None."""
    state = read_state()
    if state and alive(state["pids"]["controller"]):
        return state
    return None


@dataclass
class Mesh:
    controller: str
    processes: dict[str, subprocess.Popen]
    state: dict


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        # a session of its own: a Ctrl-C in the terminal reaches `up`, which stops it
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def start(regions: Mapping[str, Region], regions_dir: Path, only: list[str] | None,
          wan_file: Path, log_level: str = "info",
          controller_options: list[str] = (), insecure: bool = False,
          relay_options: list[str] = ()) -> Mesh:
    """Start the controller, wait until it listens, then one relay per region: over mutual
    TLS with the mesh's certificates (made in its home when missing), or, `insecure`, in
    plaintext."""
    base = home()
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    port = free_port()
    controller = f"127.0.0.1:{port}"
    secrets = local_secrets(len(regions))
    identities = {} if insecure else mesh_identities(list(regions))
    py = [sys.executable, "-m", "skymesh"]

    def tls_options(who: str) -> list[str]:
        if insecure:
            return ["--insecure"]
        files = identities[who]
        return ["--ca", str(files.ca), "--cert", str(files.cert), "--key", str(files.key)]

    ctl_argv = py + ["controller", "--listen", controller, "--regions", str(regions_dir),
                     "--apps", str(secrets["apps"]), "--fabric-keys", str(secrets["fabric"]),
                     "--state", str(base / "controller-state.json"),
                     "--log-level", log_level, *tls_options("controller"), *controller_options]
    if only:
        ctl_argv += ["--only", ",".join(only)]
    processes = {"controller": spawn(ctl_argv, logs / "controller.log")}
    _wait_listening(processes["controller"], "127.0.0.1", port, logs / "controller.log")
    relays, relay_argv = {}, {}
    for i, rid in enumerate(regions):
        argv = py + ["relay", "--region", rid, "--controller", controller,
                     "--bind", f"{relay_address(i)}:0", "--wan", str(wan_file),
                     "--tls-cert", str(secrets["cert"]), "--tls-key", str(secrets["key"]),
                     "--log-level", log_level, *tls_options(rid), *relay_options]
        processes[rid] = spawn(argv, logs / f"{rid}.log")
        relays[rid] = processes[rid].pid
        relay_argv[rid] = argv
    state = {
        "controller": controller,
        "controller_argv": ctl_argv,
        "relay_argv": relay_argv,
        "pids": {"controller": processes["controller"].pid, "relays": relays},
        "regions": list(regions),
        "wan": str(wan_file),
        "ca": str(secrets["ca"]),
        "insecure": insecure,
        "admin_cert": "" if insecure else str(identities["admin"].cert),
        "apps": str(secrets["apps"]),
        "logs": str(logs),
        "started": time.time(),
    }
    state_file().write_text(json.dumps(state, indent=1))
    return Mesh(controller, processes, state)


def kill(state: dict, which: str) -> bool:
    """SIGKILL the controller (`which` = "controller") or a region's relay, as a crash or a
    lost region would end it; False when it was not running."""
    pid = state["pids"]["controller"] if which == "controller" else \
        state["pids"]["relays"].get(which)
    if pid is None or not alive(pid):
        return False
    _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def restart(state: dict, which: str) -> int:
    """Start the controller or a region's relay again as `start` did (its log goes on);
    records the new pid in the state file and returns it."""
    logs = Path(state["logs"])
    if which == "controller":
        proc = spawn(state["controller_argv"], logs / "controller.log")
        host, _, port = state["controller"].rpartition(":")
        _wait_listening(proc, host, int(port), logs / "controller.log")
        state["pids"]["controller"] = proc.pid
    else:
        if which not in state.get("relay_argv", {}):
            raise KeyError(f"no relay of region {which!r} in this mesh")
        proc = spawn(state["relay_argv"][which], logs / f"{which}.log")
        state["pids"]["relays"][which] = proc.pid
    state_file().write_text(json.dumps(state, indent=1))
    return proc.pid


def local_secrets(relays: int) -> dict[str, Path]:
    """The local mesh's development CA and the relays' certificate (for every relay address),
    its apps file (the `demo` app's public key; its private key beside it, which signs the
    local tokens) and its fabric key; made once in the mesh's home and reused."""
    from skymesh import apps, certs

    base = home()
    ca_dir = base / "certs"
    certs.ensure_dev_ca(ca_dir)
    hosts = ["localhost", "127.0.0.1", *(relay_address(i) for i in range(relays))]
    cert, key = ca_dir / "relays.pem", ca_dir / "relays.key"
    current = certs.load_cert(ca_dir / certs.CA_CERT)
    if not (cert.exists() and key.exists() and _covers(cert, hosts)
            and certs.verify_signed_by(certs.load_cert(cert), current)):
        cert, key = certs.issue_cert(ca_dir, ca_dir, "relays", hosts)
    # clients check the edges against the trust bundle: a rotated CA's edges stay trusted
    return {"ca": ca_dir / certs.BUNDLE, "cert": cert, "key": key,
            "apps": apps.ensure_apps_file(base / "apps.yaml"),
            "fabric": apps.ensure_fabric_key_file(base / "fabric.keys")}


LOCAL_CONTROLLER = "local"
LOCAL_ADMIN = "local"  # an operator
LOCAL_NODE = "n1"


def mesh_identities(regions: list[str]) -> dict[str, TlsFiles]:
    """The mesh certificates of the local mesh, issued in its home when missing, expired or
    expiring within a day, or issued by a CA no longer current: "controller", "admin" (an
    operator) and one per region, whose relay is node n1."""
    from skymesh import certs, identity

    ca_dir = home() / "certs"
    ca_cert = certs.load_cert(certs.ensure_dev_ca(ca_dir)[0])
    mesh = certs.mesh_of(ca_cert)
    wanted = {"controller": (identity.controller(mesh, LOCAL_CONTROLLER),
                             ["localhost", "127.0.0.1", "::1"]),
              "admin": (identity.admin(mesh, LOCAL_ADMIN, "operator"), [])}
    for rid in regions:
        wanted[rid] = (identity.relay(mesh, rid, LOCAL_NODE), [])
    out = {}
    for who, (ident, hosts) in wanted.items():
        files = TlsFiles.in_dir(ca_dir, certs.file_stem(ident))
        if not _current(files, ca_cert, hosts):
            certs.issue_identity(ca_dir, ca_dir, ident, hosts)
        out[who] = files
    return out


def _current(files: TlsFiles, ca_cert, hosts: list[str]) -> bool:
    from skymesh import certs

    try:
        cert = certs.load_cert(files.cert)
        info = certs.describe(files.cert)
    except (certs.CertError, OSError, ValueError):
        return False
    names = {n.split(":", 1)[1] for n in info["sans"]}
    fresh = cert.not_valid_after_utc.timestamp() - time.time() > 86400
    return (files.key.exists() and fresh and set(hosts) <= names
            and certs.verify_signed_by(cert, ca_cert))


def _covers(cert_path: Path, hosts: list[str]) -> bool:
    from skymesh import certs

    try:
        info = certs.describe(cert_path)
    except (certs.CertError, OSError, ValueError):
        return False
    names = {n.split(":", 1)[1] for n in info["sans"]}
    return set(hosts) <= names and info["valid_now"]


def _wait_listening(proc: subprocess.Popen, host: str, port: int, log: Path,
                    timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the controller exited ({proc.returncode}):\n{_tail(log)}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the controller did not listen on {host}:{port} in {timeout:.0f} s")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(state: dict, timeout: float = 5.0, progress: Callable[[str], None] = print) -> int:
    """Stop every process of the mesh: SIGTERM, then SIGKILL what is left. Returns how many
    were running."""
    names = {state["pids"]["controller"]: "controller",
             **{pid: f"relay {region}" for region, pid in state["pids"]["relays"].items()}}
    running = [p for p in names if alive(p)]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in running):
        time.sleep(0.05)
    left = [p for p in running if alive(p)]
    for pid in left:
        _signal(pid, signal.SIGKILL)
    if left:
        progress(f"killed what did not stop in {timeout:.0f} s: "
                 + ", ".join(f"{names[p]} (pid {p})" for p in left))
    try:
        state_file().unlink()
    except FileNotFoundError:
        pass
    return len(running)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
