"""A real local mesh: controller and relay processes on loopback, driven through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from support import cli_json, run_cli, try_json, wait_for, write_matrix, write_regions

from skymesh.cli import mesh

REGIONS = {"aa": (50.0, 8.0), "bb": (48.0, 2.0), "cc": (52.0, 0.0), "dd": (45.0, 9.0)}
# the direct aa-bb link is slow: the controller must route aa -> cc -> bb
RTTS = {("aa", "bb"): 200, ("aa", "cc"): 10, ("cc", "bb"): 10, ("aa", "dd"): 50,
        ("bb", "dd"): 50, ("cc", "dd"): 50}


@pytest.fixture
def triangle(tmp_path, start_mesh):
    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    # with the live map: `up` prints its URL, `down` stops it
    result = start_mesh("--regions", str(regions), "--latency-matrix", str(matrix),
                        dashboard=True)
    return result


def test_mesh_converges_and_routes_around_a_slow_direct_link(triangle):
    assert triangle["converged"] and triangle["relays"] == 4
    path = cli_json("admin", "path", "aa", "bb")
    assert path["src"] == "aa" and path["dst"] == "bb" and path["reachable"]
    assert path["path"] == ["aa", "cc", "bb"]
    # one-way 5 + 5 ms plus two hop costs, measured through the emulated WAN
    assert 10.0 <= path["cost_ms"] < 16.0
    back = cli_json("admin", "path", "bb", "aa")
    assert back["path"] == ["bb", "cc", "aa"]


def test_admin_json_shapes(triangle):
    status = cli_json("admin", "status")
    assert status["relays"] == 4 and status["converged"] is True
    assert status["route_version"] >= 1
    links = cli_json("admin", "links")
    assert len(links) == 12
    for link in links:
        assert {"src", "dst", "rtt_ms", "loss", "state"} <= link.keys()
        assert link["state"] == "up" and link["loss"] == 0
    by_pair = {(x["src"], x["dst"]): x for x in links}
    # measured RTTs follow the matrix (timers add a little)
    assert 195 <= by_pair[("aa", "bb")]["rtt_ms"] < 215
    assert 9 <= by_pair[("aa", "cc")]["min_rtt_ms"] < 14
    routes = cli_json("admin", "routes", "aa")
    assert routes["region"] == "aa"
    assert {r["dst"]: r["next_hop"] for r in routes["routes"]} == {
        "bb": "cc", "cc": "cc", "dd": "dd"}
    regions = cli_json("admin", "regions")
    assert [r["id"] for r in regions] == ["aa", "bb", "cc", "dd"]
    assert all(r["connected"] and r["route_version"] >= 1 for r in regions)


def test_admin_tables_are_readable(triangle):
    out = run_cli("admin", "path", "aa", "bb")
    assert out.returncode == 0 and "aa > cc > bb" in out.stdout
    out = run_cli("admin", "links")
    assert out.stdout.splitlines()[0].split()[:3] == ["SRC", "DST", "RTT_MS"]
    assert run_cli("admin", "routes", "zz").returncode == 2  # unknown region
    assert "unknown region 'zz'" in run_cli("admin", "routes", "zz").stderr


def test_dead_relay_drops_out_and_routes_move(triangle):
    state = mesh.read_state()
    os.kill(state["pids"]["relays"]["cc"], signal.SIGKILL)
    path = wait_for(lambda: (p := cli_json("admin", "path", "aa", "bb"))["path"] != [
        "aa", "cc", "bb"] and p, 20, "a path from aa to bb that avoids the dead cc")
    assert "cc" not in path["path"] and path["reachable"]
    gone = run_cli("admin", "path", "aa", "cc", "--json")
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["reason"] == "cc has no relay in the topology"
    assert cli_json("admin", "status")["relays"] == 3


def test_relays_keep_tables_across_a_controller_restart(triangle):
    state = mesh.read_state()
    acked = {r["id"]: r["route_version"] for r in cli_json("admin", "regions")}
    os.kill(state["pids"]["controller"], signal.SIGKILL)
    wait_for(lambda: not mesh.alive(state["pids"]["controller"]), 10, "the controller to die")
    # the relays stay up without their controller
    assert all(mesh.alive(pid) for pid in state["pids"]["relays"].values())
    log = open(os.path.join(state["logs"], "controller.log"), "ab")
    proc = subprocess.Popen(state["controller_argv"], stdout=log, stderr=log,
                            start_new_session=True)
    state["pids"]["controller"] = proc.pid
    mesh.state_file().write_text(json.dumps(state))
    status = wait_for(lambda: (s := try_json("admin", "status")) and s["converged"] and
                      s["relays"] == 4 and s, 30, "the mesh to converge again")
    regions = cli_json("admin", "regions")
    # each relay came back holding the tables it had (or a later one) ...
    assert all(r["hello_version"] >= acked[r["id"]] >= 1 for r in regions), (
        acked, [(r["id"], r["hello_version"], r["route_version"]) for r in regions])
    # ... and versions only grow across the restart
    assert status["route_version"] > max(r["hello_version"] for r in regions)
    assert cli_json("admin", "path", "aa", "bb")["path"] == ["aa", "cc", "bb"]


def test_down_stops_every_process(triangle):
    # the live map `up` started, as `up` and `admin status` say it
    url = triangle["dashboard_url"]
    assert url.startswith("http://127.0.0.1:")
    assert cli_json("admin", "status")["dashboard_url"] == url
    state = mesh.read_state()
    pids = [state["pids"]["controller"], *state["pids"]["relays"].values(),
            state["pids"]["dashboard"]]  # the live map `up` started
    out = cli_json("down")
    assert out["stopped"] == 6
    assert not any(mesh.alive(p) for p in pids)
    assert mesh.read_state() is None


HANGS_ON_CANCEL = """
import asyncio, sys, time
from skymesh.cli.common import run_loop, until_signalled

async def work():
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        time.sleep(60)  # a teardown that blocks the loop, as grpc.aio's sometimes does

run_loop(until_signalled(work()))
"""


def test_a_signalled_process_exits_even_when_its_teardown_hangs():
    proc = subprocess.Popen([sys.executable, "-c", HANGS_ON_CANCEL], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "exiting anyway" in proc.stderr.read()
    finally:
        proc.kill()


def test_a_bad_catalogue_never_starts_a_mesh(tmp_path, home):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    (regions / "bb.yaml").write_text("id: bb\nname: B\ncountry: XX\nlat: 123\nlon: 2\n")
    out = run_cli("up", "--regions", str(regions), "--detach")
    assert out.returncode == 2
    assert f"{regions / 'bb.yaml'}: lat:" in out.stderr
    assert f"{regions / 'bb.yaml'}: country:" in out.stderr
    assert mesh.read_state() is None


def test_a_bad_matrix_names_file_line_and_field(tmp_path, home):
    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    matrix = tmp_path / "m.csv"
    matrix.write_text("src,dst,rtt_ms\naa,bb,fast\n")
    out = run_cli("up", "--regions", str(regions), "--latency-matrix", str(matrix), "--detach")
    assert out.returncode == 2
    assert f"{matrix}: line 2: rtt_ms: must be a positive number, got 'fast'" in out.stderr
    assert mesh.read_state() is None


def test_unknown_region_in_only(tmp_path, home):
    out = run_cli("up", "--only", "frankfurt,atlantis", "--detach")
    assert out.returncode == 2 and "atlantis" in out.stderr


def test_admin_without_a_mesh_says_how_to_start_one(home):
    out = run_cli("admin", "status")
    assert out.returncode == 2
    assert "no local mesh is running" in out.stderr and "skymesh up" in out.stderr


def test_chaos_keeps_asking_a_controller_that_does_not_answer_then_says_so(monkeypatch):
    from skymesh.cli import admin

    monkeypatch.setattr(admin._Credentials, "set", True)  # nobody listens: TLS or not
    monkeypatch.setattr(admin._Credentials, "files", None)
    started = time.monotonic()
    with pytest.raises(admin.NotAnswering, match="not answering"):
        admin.chaos("127.0.0.1:1", "aa", drop_all=True, patience=1.0)
    assert time.monotonic() - started >= 1.0
