"""The local mesh with three controller replicas on a local etcd (`skymesh up --controllers
3`: Debian's etcd-server, mutual TLS, real relay processes), and the drills that take the
leader and the store away under channel traffic: another replica leads and every relay holds
its newer routes, no relay's version goes back, no message is lost; with etcd away, writes
are refused with the reason and everything comes back by itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

from support import cli_json, run_cli, write_matrix, write_regions

# aa and bb are far apart directly and near through cc and dd: the routes the drills measure
# cross the mesh
REGIONS = {"aa": (50.0, 8.0), "bb": (48.0, 2.0), "cc": (52.0, 5.0), "dd": (47.0, 6.0)}
RTTS = {("aa", "bb"): 80, ("aa", "cc"): 10, ("cc", "bb"): 10, ("aa", "dd"): 12,
        ("dd", "bb"): 12, ("cc", "dd"): 15}


def test_three_replicas_survive_the_leader_and_the_store(start_mesh, tmp_path: Path):
    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    up = start_mesh("--regions", str(regions), "--latency-matrix", str(matrix),
                    "--controllers", "3")
    assert up["relays"] == 4 and up["converged"]
    status = cli_json("admin", "status", "--json")
    assert status["store"]["kind"] == "etcd" and status["store"]["healthy"]
    assert {r["id"] for r in status["replicas"]} == {"c1", "c2", "c3"}
    assert [r["id"] for r in status["replicas"] if r["leader"]] == [status["leader"]]
    ps = {row["name"]: row["running"] for row in cli_json("mesh", "ps", "--json")}
    assert ps["c1"] and ps["c2"] and ps["c3"] and ps["etcd"]
    # every replica's resolver answers clients: a follower that never led asks the leader
    state = json.loads((Path(os.environ["SKYMESH_HOME"]) / "mesh.json").read_text())
    for resolver in state["resolvers"].split(","):
        edges = cli_json("resolve", "--resolver", resolver, "--count", "4")["edges"]
        assert {e["region"] for e in edges} == set(REGIONS), resolver

    drill = run_cli("drill", "kill-controller", "--duration", "8s", "--before", "3",
                    "--after", "5", "--flows", "4", "--json", timeout=150)
    assert drill.returncode == 0, drill.stderr
    result = json.loads(drill.stdout)
    assert result["fault"] == f"killed the leading replica {status['leader']}"
    assert result["new_leader_ms"] is not None and result["new_leader_ms"] < 8000, result
    assert result["version_regressions"] == 0
    assert result["messages_lost"] == 0 and result["residency_violations"] == 0
    after = cli_json("admin", "status", "--json")
    assert len(after["replicas"]) == 3  # the killed one is back, campaigning

    drill = run_cli("drill", "kill-store", "--duration", "6s", "--before", "3",
                    "--after", "5", "--flows", "4", "--json", timeout=150)
    assert drill.returncode == 0, drill.stderr
    result = json.loads(drill.stdout)
    assert result["store_away_seen_ms"] is not None
    assert "could not keep" in result["write_refused"] and \
        "UNAVAILABLE" in result["write_refused"]
    assert result["store_back_ms"] is not None
    assert result["messages_lost"] == 0 and result["media_lost"] == 0
    # writes go through again, without any restart
    drained = cli_json("admin", "drain", "dd", "--json")
    assert drained["drained_regions"] == ["dd"]
