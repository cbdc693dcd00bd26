"""The local mesh: a controller and one relay process per region on loopback addresses, or
several (relay nodes n1..nN of each region, each a process on its own address)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from skymesh import nodes
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
    """The state of a local mesh whose controller (or one of its replicas) still runs, else
    None."""
    state = read_state()
    if state and any(alive(pid) for pid in controller_pids(state).values()):
        return state
    return None


def controller_pids(state: dict) -> dict[str, int]:
    """The controller's pid, or each replica's by its id."""
    return state["pids"].get("replicas") or {"controller": state["pids"]["controller"]}


def controller_addresses(state: dict) -> list[str]:
    return state["controller"].split(",")


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


LOCAL_NODE = "n1"


@dataclass(frozen=True)
class RelaySpec:
    """One relay process of the local mesh: `key` names it in the state file and to `kill`
    and `restart`."""

    key: str
    region: str
    node: str
    address: str  # its own loopback address: relay traffic and client edge


def node_ids(per_region: int) -> list[str]:
    """The node ids of a region's relays in the local mesh: n1, n2, ..."""
    if per_region < 1:
        raise ValueError(f"nodes per region must be 1 or more, got {per_region}")
    return [nodes.check_node_id(f"n{i}") for i in range(1, per_region + 1)]


def relay_key(region: str, node: str) -> str:
    """How the state file names a relay node: node n1 by its region alone, as when a region
    had one relay (drills and scripts kill and restart "fra"), the others "fra/n2"."""
    return region if node == LOCAL_NODE else nodes.address(region, node)


def relay_specs(regions: list[str], per_region: int = 1) -> list[RelaySpec]:
    """The relays of a mesh of `regions` with `per_region` nodes each, in start order. Every
    region's n1 comes first and keeps the address it has with one node per region, so a
    mesh's first relays sit where they always did."""
    out = []
    for k, node in enumerate(node_ids(per_region)):
        for i, rid in enumerate(regions):
            out.append(RelaySpec(relay_key(rid, node), rid, node,
                                 relay_address(k * len(regions) + i)))
    return out


def relay_settings(spec: RelaySpec, controller: str, wan_file: Path, edge_cert: Path,
                   edge_key: Path, log_level: str, tls: TlsFiles | None,
                   edge_limits: dict[str, float] | None = None,
                   name_node: bool = False, log_format: str = "text",
                   history_dir: Path | None = None) -> dict:
    """One relay's configuration file, as nested settings. `name_node` adds its node id:
    with one node per region the relay's certificate (or, --insecure, chance) names it, as
    it always did. `history_dir`: where its chat history is kept across restarts."""
    settings: dict = {"region": spec.region, "node": spec.node if name_node else None,
                      "controllers": controller.split(","), "listen": f"{spec.address}:0",
                      "wan": wan_file,
                      "edge": {"cert": edge_cert, "key": edge_key, "limits": edge_limits},
                      "history": {"db": history_dir / (spec.key.replace(nodes.SEPARATOR, ".")
                                                       + ".db")}
                      if history_dir is not None else None,
                      "tls": tls_settings(tls),
                      "log": {"level": log_level, "format": log_format},
                      # on in the local mesh (off by default elsewhere): any free port, which
                      # the relay tells the controller (`admin regions`)
                      "metrics": {"listen": f"{spec.address}:0"}}
    # no health listener: a gRPC server more in each of up to 45 processes on two cores, for
    # load balancers the local mesh has none of (tests/integration/test_health.py has its own)
    return settings


def tls_settings(tls: TlsFiles | None) -> dict:
    """The `tls:` section of a process's file: its mesh certificate, or plaintext."""
    if tls is None:
        return {"insecure": True}
    return {"ca": tls.ca, "cert": tls.cert, "key": tls.key}


def config_argv(py: list[str], command: str, path: Path) -> list[str]:
    return [*py, command, "--config", str(path)]


CONFIG_HEADER = ("{what} of the local mesh, written by `skymesh up` at every start\n"
                 "(format: README, Configuration files)")


def limits_mapping(text: str) -> dict[str, float]:
    """--edge-limits' "name=value,..." as the `edge.limits:` mapping of a relay's file."""
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        number = float(value)
        out[name.strip()] = int(number) if number.is_integer() else number
    return out


def log_file(logs: Path, key: str) -> Path:
    """A relay's log: fra.log for node n1, fra.n2.log for the others (region ids have no dots)."""
    return logs / (key.replace(nodes.SEPARATOR, ".") + ".log")


def start(regions: Mapping[str, Region], regions_dir: Path, only: list[str] | None,
          wan_file: Path, log_level: str = "info",
          controller_settings: Mapping[str, object] | None = None, insecure: bool = False,
          edge_limits: dict[str, float] | None = None, nodes_per_region: int = 1,
          controllers: int = 1, store: str | None = None, log_format: str = "text") -> Mesh:
    """Start the controller, wait until it listens, then `nodes_per_region` relays per region:
    over mutual TLS with the mesh's certificates (made in its home when missing), or,
    `insecure`, in plaintext. With `controllers` above 1 or a `store` (etcd://...), the
    controller is that many replicas on etcd: the one at `store`, or a local etcd started
    in the mesh's home; each relay is given every replica, starting with a different one.
    Every process runs on a configuration file written in the mesh's home (config/), as a
    deployed one does; `controller_settings` go into the controllers' files."""
    from skymesh.cli import configs

    specs = relay_specs(list(regions), nodes_per_region)
    base = home()
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    history_dir = base / "history"  # the relays' chat history, kept across restarts
    history_dir.mkdir(exist_ok=True)
    replicated = controllers > 1 or store is not None
    names = [f"c{i + 1}" for i in range(controllers)] if replicated else ["controller"]
    ports = {name: free_port() for name in names}
    controller = ",".join(f"127.0.0.1:{port}" for port in ports.values())
    # every replica serves the EdgeResolver to clients too, on a port of its own
    resolve_ports = {name: free_port() for name in names}
    secrets = local_secrets(len(specs))
    identities = {} if insecure else mesh_identities(
        list(regions), nodes_per_region, names if replicated else ())
    py = [sys.executable, "-m", "skymesh"]

    def tls_of(who: str) -> TlsFiles | None:
        return None if insecure else identities[who]

    config_dir = base / "config"
    for old in config_dir.glob("*.yaml"):
        old.unlink()

    etcd_pids: list[int] = []
    etcd_argvs: list[list[str]] = []
    if replicated and store is None:
        if insecure:
            raise RuntimeError("a local etcd speaks mutual TLS: replicas with --insecure need "
                               "--store etcd://... of an etcd of your own")
        store, etcd_pids, etcd_argvs = local_etcd(base, identities[names[0]])
    ctl_argvs = {}
    for name, port in ports.items():
        settings = {"listen": f"127.0.0.1:{port}",
                    **({"replica": name, "store": {"etcd": store}} if replicated else
                       {"state": base / "controller-state.json"}),
                    "regions": Path(regions_dir).resolve(), "only": only,
                    "apps": secrets["apps"], "fabric": {"keys": secrets["fabric"]},
                    "resolver": {"listen": f"127.0.0.1:{resolve_ports[name]}"},
                    "tls": tls_settings(tls_of(name)),
                    "log": {"level": log_level, "format": log_format},
                    "metrics": {"listen": "127.0.0.1:0"}}
        for key, value in (controller_settings or {}).items():
            settings[key] = ({**settings[key], **value}
                             if isinstance(value, dict) and key in settings else value)
        path = configs.write(config_dir / f"{name}.yaml", configs.CONTROLLER_CONFIG,
                             settings, CONFIG_HEADER.format(
                                 what="The controller" if name == "controller"
                                 else f"Controller replica {name}"))
        ctl_argvs[name] = config_argv(py, "controller", path)
    processes = {}
    for name, argv in ctl_argvs.items():
        processes[name] = spawn(argv, logs / f"{name}.log")
    for name, port in ports.items():
        _wait_listening(processes[name], "127.0.0.1", port, logs / f"{name}.log")
    addresses = controller.split(",")
    relays, argvs = {}, {}
    for i, spec in enumerate(specs):
        # the relays spread over the replicas: each starts with another
        order = addresses[i % len(addresses):] + addresses[:i % len(addresses)]
        settings = relay_settings(spec, ",".join(order), wan_file, secrets["cert"],
                                  secrets["key"], log_level, tls_of(spec.key), edge_limits,
                                  name_node=nodes_per_region > 1, log_format=log_format,
                                  history_dir=history_dir)
        path = configs.write(config_dir / (spec.key.replace(nodes.SEPARATOR, ".") + ".yaml"),
                             configs.RELAY_CONFIG, settings,
                             CONFIG_HEADER.format(what=f"Relay {spec.key}"))
        argv = config_argv(py, "relay", path)
        processes[spec.key] = spawn(argv, log_file(logs, spec.key))
        relays[spec.key] = processes[spec.key].pid
        argvs[spec.key] = argv
    state = {
        "controller": controller,
        "resolvers": ",".join(f"127.0.0.1:{p}" for p in resolve_ports.values()),
        # what a client trusts the resolvers' certificates with (the mesh's CAs)
        "mesh_ca": "" if insecure else str(identities[names[0]].ca),
        "controller_argv": ctl_argvs[names[0]],
        "relay_argv": argvs,
        "pids": {"controller": processes[names[0]].pid, "relays": relays},
        "regions": list(regions),
        "nodes_per_region": nodes_per_region,
        "relay_nodes": {s.key: {"region": s.region, "node": s.node, "address": s.address}
                        for s in specs},
        "wan": str(wan_file),
        "ca": str(secrets["ca"]),
        "insecure": insecure,
        "admin_cert": "" if insecure else str(identities["admin"].cert),
        "apps": str(secrets["apps"]),
        "logs": str(logs),
        "started": time.time(),
    }
    if replicated:
        state["store"] = store
        state["replicas"] = {name: {"address": f"127.0.0.1:{port}", "argv": ctl_argvs[name]}
                             for name, port in ports.items()}
        state["pids"]["replicas"] = {name: processes[name].pid for name in names}
        state["pids"]["etcd"] = etcd_pids
        state["etcd_argv"] = etcd_argvs
    state_file().write_text(json.dumps(state, indent=1))
    return Mesh(controller, processes, state)


DASHBOARD_START_S = 15.0


def dashboard_file() -> Path:
    """Where the local mesh's dashboard (skymesh/cli/dashboard.py) writes its URL and pid."""
    return home() / "dashboard.json"


def dashboard_url() -> str | None:
    """The URL of the dashboard serving the local mesh, when one runs (None otherwise): for
    `skymesh up` and `skymesh admin status` to show."""
    try:
        found = json.loads(dashboard_file().read_text())
        if not alive(int(found["pid"])):
            return None
        return found["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start_dashboard(state: dict) -> str | None:
    """`skymesh dashboard` for the local mesh, a process of it (`skymesh down` stops it); its
    URL once it serves, None if it did not come up (its log says why)."""
    logs = Path(state["logs"])
    proc = spawn([sys.executable, "-m", "skymesh", "dashboard", "--listen", "127.0.0.1:0"],
                 logs / "dashboard.log")
    state["pids"]["dashboard"] = proc.pid
    state_file().write_text(json.dumps(state, indent=1))
    deadline = time.monotonic() + DASHBOARD_START_S
    while time.monotonic() < deadline and proc.poll() is None:
        url = dashboard_url()
        if url is not None:
            return url
        time.sleep(0.1)
    return None


def local_etcd(base: Path, client: TlsFiles) -> tuple[str, list[int], list[list[str]]]:
    """A one-member etcd for the local mesh's replicas: Debian's etcd-server on a free
    loopback port, mutual TLS with a server certificate of the mesh's CA, data in the mesh's
    home, afresh at every `up` (a member's data names the ports it had). Its URL, pids,
    and the commands that start its members again on their data."""
    from skymesh import certs
    from skymesh.cli import etcdserver

    ca_dir = base / "certs"
    directory = base / "etcd"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("etcd*"):  # a member's data names its old peer port
        if old.is_dir():
            shutil.rmtree(old)
    try:
        cluster = etcdserver.start(directory, etcdserver.server_tls(
            directory, ca_dir, ca_dir / certs.BUNDLE), wait_tls=client)
    except etcdserver.EtcdStartError as e:
        raise RuntimeError(f"cannot start the local etcd: {e}") from None
    return (cluster.url, [m.process.pid for m in cluster.members if m.process is not None],
            [cluster.command(m, "existing") for m in cluster.members])


def relay_keys(state: dict, which: str, known: Iterable[str] | None = None) -> list[str]:
    """The relays of the mesh that `which` names: a region (every node of it) or one node,
    "fra/n2" ("fra/n1" is "fra"). `known`: the relay keys to look in (default: those with a
    pid in the state)."""
    keys = list(state["pids"]["relays"] if known is None else known)
    region, node = nodes.parse(which)
    if node:
        key = relay_key(region, node)
        return [key] if key in keys else []
    return [k for k in keys if nodes.region_of(k) == region]


def kill(state: dict, which: str) -> bool:
    """SIGKILL the controller (`which` = "controller"; of replicas, every one), a replica
    ("c2"), every relay node of a region ("fra") or one node ("fra/n2"), as a crash or a lost
    region or host would end it; False when none of them was running."""
    if which == "controller":
        pids = list(controller_pids(state).values())
    elif which == "etcd":
        pids = list(state["pids"].get("etcd", []))
    elif which in state["pids"].get("replicas", {}):
        pids = [state["pids"]["replicas"][which]]
    else:
        pids = [state["pids"]["relays"][k] for k in relay_keys(state, which)]
    running = [pid for pid in pids if pid is not None and alive(pid)]
    if not running:
        return False
    for pid in running:  # all at once: a region's nodes go down together
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def restart(state: dict, which: str) -> int:
    """Start the controller, a region's relay nodes or one node ("fra/n2") again as `start`
    did (their logs go on); records the new pids in the state file and returns the first.
    Of a region of several nodes, only those not running are started: after
    `kill(state, "fra/n2")`, `restart(state, "fra")` brings back n2 and leaves n1 alone."""
    logs = Path(state["logs"])
    replicas = state.get("replicas", {})
    if which == "controller" and replicas:
        down = [n for n, pid in state["pids"]["replicas"].items() if not alive(pid)]
        return restart_replicas(state, down or list(replicas))
    if which in replicas:
        return restart_replicas(state, [which])
    if which == "etcd":
        return restart_etcd(state)
    if which == "controller":
        old = state["pids"].get("controller")
        if old and alive(old):
            _end(old)  # its port is the one to listen on again
        proc = spawn(state["controller_argv"], logs / "controller.log")
        host, _, port = state["controller"].rpartition(":")
        _wait_listening(proc, host, int(port), logs / "controller.log")
        state["pids"]["controller"] = proc.pid
        state_file().write_text(json.dumps(state, indent=1))
        return proc.pid
    keys = relay_keys(state, which, state.get("relay_argv", {}))
    if not keys:
        raise KeyError(f"no relay {which!r} in this mesh")
    pids = state["pids"]["relays"]
    down = [k for k in keys if pids.get(k) is None or not alive(pids[k])]
    if len(keys) == 1:
        down = keys  # a lone relay is restarted even if it runs, as it was before nodes
        if pids.get(keys[0]) is not None and alive(pids[keys[0]]):
            _end(pids[keys[0]])  # not two processes of one node
    for key in down:
        pids[key] = spawn(state["relay_argv"][key], log_file(logs, key)).pid
    state_file().write_text(json.dumps(state, indent=1))
    return pids[(down or keys)[0]]


def restart_etcd(state: dict) -> int:
    """Start the local etcd's members again on their data; the first one's pid."""
    logs = Path(state["logs"])
    pids = []
    for argv in state.get("etcd_argv", []):
        pids.append(spawn(argv, logs / "etcd.log").pid)
    if not pids:
        raise KeyError("this mesh has no local etcd")
    state["pids"]["etcd"] = pids
    state_file().write_text(json.dumps(state, indent=1))
    return pids[0]


def restart_replicas(state: dict, names: list[str]) -> int:
    """Start controller replicas again as `start` did; the first one's pid."""
    logs = Path(state["logs"])
    for name in names:
        info = state["replicas"][name]
        old = state["pids"]["replicas"].get(name)
        if old and alive(old):
            _end(old)
        proc = spawn(info["argv"], logs / f"{name}.log")
        host, _, port = info["address"].rpartition(":")
        _wait_listening(proc, host, int(port), logs / f"{name}.log")
        state["pids"]["replicas"][name] = proc.pid
    state_file().write_text(json.dumps(state, indent=1))
    return state["pids"]["replicas"][names[0]]


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


def mesh_identities(regions: list[str], nodes_per_region: int = 1,
                    replicas: Iterable[str] = ()) -> dict[str, TlsFiles]:
    """The mesh certificates of the local mesh, issued in its home when missing, expired or
    expiring within a day, or issued by a CA no longer current: "controller", "admin" (an
    operator), one per controller replica (c1, ...) and one per relay node, keyed as
    `relay_key` names them: the region for node n1, "region/nK" for the others."""
    from skymesh import certs, identity

    ca_dir = home() / "certs"
    ca_cert = certs.load_cert(certs.ensure_dev_ca(ca_dir)[0])
    mesh = certs.mesh_of(ca_cert)
    wanted = {"controller": (identity.controller(mesh, LOCAL_CONTROLLER),
                             ["localhost", "127.0.0.1", "::1"]),
              "admin": (identity.admin(mesh, LOCAL_ADMIN, "operator"), [])}
    for name in replicas:
        wanted[name] = (identity.controller(mesh, name), ["localhost", "127.0.0.1", "::1"])
    for node in node_ids(nodes_per_region):
        for rid in regions:
            wanted[relay_key(rid, node)] = (identity.relay(mesh, rid, node), [])
    out = {}
    for who, (ident, hosts) in wanted.items():
        files = TlsFiles.in_dir(ca_dir, certs.file_stem(ident))
        if not certs.is_current(files.cert, files.key, ca_cert, hosts, 86400):
            certs.issue_identity(ca_dir, ca_dir, ident, hosts)
        out[who] = files
    return out


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
    names = {**{pid: ("controller" if name == "controller" else f"controller {name}")
                for name, pid in controller_pids(state).items()},
             **{pid: f"relay {key}" for key, pid in state["pids"]["relays"].items()},
             **({state["pids"]["dashboard"]: "dashboard"} if state["pids"].get("dashboard")
                else {})}
    etcd = {pid: "etcd" for pid in state["pids"].get("etcd", [])}
    running = [p for p in names if alive(p)]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in running):
        time.sleep(0.05)
    # etcd last: replicas stopping resign on it
    names.update(etcd)
    stopping = [p for p in etcd if alive(p)]
    for pid in stopping:
        _signal(pid, signal.SIGTERM)
    running += stopping
    while time.monotonic() < deadline + timeout and any(alive(p) for p in stopping):
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


def _end(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM `pid`, and SIGKILL it if it has not gone within `timeout`."""
    if pid <= 0:  # never a process group
        raise ValueError(f"not a process id: {pid}")
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
