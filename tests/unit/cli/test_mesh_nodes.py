"""The local mesh with several relay nodes per region (skymesh/cli/mesh.py, `up`): names,
addresses, argv, identities and the state file, built without starting a process; `kill`
and `restart` by region and by node, on made-up pids."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from skymesh import certs, nodes
from skymesh.cli import configs, mesh, up
from skymesh.cli.render import table

REGIONS = ["fra", "lon", "nyc"]


def test_one_node_per_region_is_the_mesh_of_before():
    specs = mesh.relay_specs(REGIONS)
    assert [s.key for s in specs] == REGIONS
    assert [s.node for s in specs] == ["n1"] * 3
    assert [s.address for s in specs] == [mesh.relay_address(i) for i in range(3)]


def test_two_nodes_per_region_have_their_own_names_and_addresses():
    specs = mesh.relay_specs(REGIONS, 2)
    assert [s.key for s in specs] == ["fra", "lon", "nyc", "fra/n2", "lon/n2", "nyc/n2"]
    assert [(s.region, s.node) for s in specs[3:]] == [("fra", "n2"), ("lon", "n2"),
                                                      ("nyc", "n2")]
    # n1 keeps the address it has with one node per region
    assert [s.address for s in specs[:3]] == [s.address for s in mesh.relay_specs(REGIONS)]
    assert len({s.address for s in specs}) == 6
    for s in specs:
        assert nodes.check_node_id(s.node) == s.node
        assert nodes.parse(s.key) == (s.region, "" if s.node == "n1" else s.node)


def test_node_ids_are_checked_and_counted():
    assert mesh.node_ids(3) == ["n1", "n2", "n3"]
    with pytest.raises(ValueError):
        mesh.node_ids(0)


def test_relay_settings_name_the_node_only_with_several_per_region(tmp_path: Path):
    spec = mesh.relay_specs(REGIONS, 2)[4]  # lon/n2
    settings = mesh.relay_settings(spec, "127.0.0.1:7400,127.0.0.1:7401", Path("wan.json"),
                                   Path("e.pem"), Path("e.key"), "info", None,
                                   mesh.limits_mapping("messages-per-s=5,media-burst-bytes=1e6"),
                                   name_node=True, log_format="json")
    path = configs.write(tmp_path / "lon.n2.yaml", configs.RELAY_CONFIG, settings)
    values = configs.RELAY_CONFIG.load(path)
    assert values["region"] == "lon" and values["node"] == "n2"
    assert values["bind"] == f"{spec.address}:0"
    assert values["controller"] == "127.0.0.1:7400,127.0.0.1:7401"
    assert values["insecure"] is True
    assert values["edge_limits"] == "messages-per-s=5,media-burst-bytes=1000000"
    # metrics on any free port of its address; logs as `up` was told
    assert values["metrics_listen"] == f"{spec.address}:0"
    assert "health_listen" not in values
    assert values["log_format"] == "json"
    one = mesh.relay_settings(mesh.relay_specs(REGIONS)[1], "127.0.0.1:7400",
                              Path("wan.json"), Path("e.pem"), Path("e.key"), "info", None)
    assert "node" not in configs.RELAY_CONFIG.loads(configs.dump(one), "x", tmp_path)
    assert mesh.config_argv(["py"], "relay", path) == ["py", "relay", "--config", str(path)]


def test_log_files_do_not_collide():
    logs = Path("/logs")
    assert mesh.log_file(logs, "fra") == logs / "fra.log"
    assert mesh.log_file(logs, "fra/n2") == logs / "fra.n2.log"


class FakeProcess:
    next_pid = 1000

    def __init__(self, argv: list[str]) -> None:
        FakeProcess.next_pid += 1
        self.pid = FakeProcess.next_pid
        self.argv = argv

    def poll(self) -> None:
        return None


@pytest.fixture
def fake_spawn(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[tuple[list[str], Path]]:
    spawned: list[tuple[list[str], Path]] = []

    def spawn(argv: list[str], log: Path) -> FakeProcess:
        spawned.append((argv, log))
        return FakeProcess(argv)

    monkeypatch.setattr(mesh, "spawn", spawn)
    monkeypatch.setattr(mesh, "_wait_listening", lambda *a, **k: None)
    return spawned


def regions_of(ids: list[str]) -> dict:
    return {rid: SimpleNamespace(id=rid) for rid in ids}


def test_start_with_two_nodes_per_region_records_every_node(fake_spawn, home: Path):
    m = mesh.start(regions_of(REGIONS), Path("regions"), None, home / "wan.json",
                   nodes_per_region=2)
    state = json.loads(mesh.state_file().read_text())
    keys = ["fra", "lon", "nyc", "fra/n2", "lon/n2", "nyc/n2"]
    assert list(state["pids"]["relays"]) == keys == list(state["relay_argv"])
    assert set(m.processes) == {"controller", *keys}
    assert state["nodes_per_region"] == 2
    assert state["relay_nodes"]["nyc/n2"]["node"] == "n2"
    assert state["pids"]["relays"]["fra"] == m.processes["fra"].pid
    logs = [log.name for _, log in fake_spawn]
    assert logs == ["controller.log", "fra.log", "lon.log", "nyc.log", "fra.n2.log",
                    "lon.n2.log", "nyc.n2.log"]
    binds = set()
    for key in keys:
        argv = state["relay_argv"][key]
        assert argv[-3:-1] == ["relay", "--config"]
        values = configs.RELAY_CONFIG.load(argv[-1])
        region, node = nodes.parse(key)
        assert values["region"] == region
        assert values["node"] == (node or "n1")
        binds.add(values["bind"])
        # each node presents its own mesh certificate, naming its region and node
        assert any(s.startswith("URI:spiffe://") and s.endswith(f"/relay/{region}/{node or 'n1'}")
                   for s in certs.describe(values["cert"])["sans"])
    assert len(binds) == 6
    # the client edges' certificate covers every node's address
    edge_cert = configs.RELAY_CONFIG.load(state["relay_argv"]["nyc/n2"][-1])["tls_cert"]
    sans = certs.describe(edge_cert)["sans"]
    assert f"IP:{state['relay_nodes']['nyc/n2']['address']}" in sans
    controller = configs.CONTROLLER_CONFIG.load(state["controller_argv"][-1])
    assert controller["listen"] == state["controller"]
    assert controller["state"] == home / "controller-state.json"


def test_start_with_one_node_per_region_keeps_argv_and_keys(fake_spawn, home: Path):
    mesh.start(regions_of(REGIONS), Path("regions"), None, home / "wan.json", insecure=True)
    state = json.loads(mesh.state_file().read_text())
    assert list(state["pids"]["relays"]) == REGIONS
    assert all("node" not in configs.RELAY_CONFIG.load(argv[-1])
               for argv in state["relay_argv"].values())
    assert state["nodes_per_region"] == 1


def test_identities_one_per_node(home: Path):
    ids = mesh.mesh_identities(["fra"], 2)
    assert {"controller", "admin", "fra", "fra/n2"} <= set(ids)
    assert ids["fra"].cert != ids["fra/n2"].cert
    assert set(mesh.mesh_identities(["fra"])) == {"controller", "admin", "fra"}


def state_of(pids: dict[str, int], home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    return {"controller": "127.0.0.1:1", "controller_argv": ["ctl"], "logs": str(home),
            "pids": {"controller": 1, "relays": dict(pids)},
            "relay_argv": {k: [k] for k in pids}}


def test_relay_keys_by_region_and_by_node(home: Path):
    state = state_of({"fra": 11, "lon": 12, "fra/n2": 21, "lon/n2": 22}, home)
    assert mesh.relay_keys(state, "fra") == ["fra", "fra/n2"]
    assert mesh.relay_keys(state, "fra/n2") == ["fra/n2"]
    assert mesh.relay_keys(state, "fra/n1") == ["fra"]
    assert mesh.relay_keys(state, "fra/n3") == []
    assert mesh.relay_keys(state, "fr") == []


@pytest.fixture
def fake_processes(monkeypatch: pytest.MonkeyPatch, fake_spawn):
    """Pids that live until signalled."""
    living: set[int] = set()
    signalled: list[int] = []
    monkeypatch.setattr(mesh, "alive", lambda pid: pid in living)

    def signal(pid: int, sig: int) -> None:
        signalled.append(pid)
        living.discard(pid)

    monkeypatch.setattr(mesh, "_signal", signal)
    return living, signalled


def test_kill_a_region_kills_every_node_and_a_node_only_itself(fake_processes, home: Path):
    living, signalled = fake_processes
    state = state_of({"fra": 11, "lon": 12, "fra/n2": 21, "lon/n2": 22}, home)
    living.update({11, 12, 21, 22})
    assert mesh.kill(state, "lon/n2")
    assert signalled == [22] and living == {11, 12, 21}
    assert not mesh.kill(state, "lon/n2")  # not running any more
    assert mesh.kill(state, "fra")
    assert sorted(signalled) == [11, 21, 22] and living == {12}


def test_restart_a_region_starts_only_its_nodes_that_are_down(fake_processes, home: Path):
    living, _ = fake_processes
    state = state_of({"fra": 11, "fra/n2": 21}, home)
    living.update({11})
    pid = mesh.restart(state, "fra")
    assert state["pids"]["relays"]["fra"] == 11  # n1 ran: left alone
    assert pid == state["pids"]["relays"]["fra/n2"] != 21
    assert json.loads(mesh.state_file().read_text())["pids"]["relays"]["fra/n2"] == pid
    new = mesh.restart(state, "fra/n2")  # one node asked for by name: started
    assert new == state["pids"]["relays"]["fra/n2"] != pid
    with pytest.raises(KeyError):
        mesh.restart(state, "fra/n9")


def test_restarting_a_running_node_ends_it_first(fake_processes, home: Path):
    living, signalled = fake_processes
    state = state_of({"fra": 11, "fra/n2": 21}, home)
    living.update({11, 21})
    new = mesh.restart(state, "fra/n2")
    assert signalled == [21] and 21 not in living  # not two processes of one node
    assert state["pids"]["relays"]["fra/n2"] == new != 21
    assert 11 in living


def test_nodes_connected_counts_listed_nodes_or_connected_regions():
    listed = [{"connected": True, "nodes": [{"node_id": "n1"}, {"node_id": "n2"}]},
              {"connected": True, "nodes": [{"node_id": "n1"}]},
              {"connected": False, "nodes": []}]
    assert up.nodes_connected(listed) == 3
    older = [{"connected": True}, {"connected": False}, {"connected": True, "nodes": []}]
    assert up.nodes_connected(older) == 2


def test_mesh_processes_lists_every_node(fake_processes, home: Path):
    living, _ = fake_processes
    state = state_of({"fra": 11, "fra/n2": 21}, home)
    state["relay_nodes"] = {"fra": {"region": "fra", "node": "n1", "address": "127.1.0.1"},
                            "fra/n2": {"region": "fra", "node": "n2",
                                       "address": "127.1.0.2"}}
    living.update({1, 11})
    rows = up.mesh_processes(state)
    assert [(r["name"], r["node"], r["running"]) for r in rows] == [
        ("controller", "", True), ("fra", "n1", True), ("fra/n2", "n2", False)]
    assert table(["NAME"], [[r["name"]] for r in rows]).splitlines()[-1] == "fra/n2"
