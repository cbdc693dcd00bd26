"""Ordered installation of new routes (controller/ordering.py): leaves first, never onto a
next hop whose own installed row does not yet lead to the destination."""

from __future__ import annotations

import random

from controller import engine, ordering, routing
from controller.engine import Route
from skymesh.policy import Policy, Zone

Z = "global"


def row(*path: str, zone: str = Z) -> Route:
    return Route(zone, path[0], path[-1], tuple(path), float(len(path)))


def up_except(*down: tuple[str, str]):
    cut = {frozenset(d) for d in down}
    return lambda a, b: frozenset((a, b)) not in cut


def install(installed: dict, region: str, rows: list[Route]) -> None:
    installed[region] = {(r.zone, r.dst): r for r in rows}


def test_reaches_follows_installed_rows_over_links_that_are_up():
    installed = {"a": {(Z, "d"): row("a", "b", "d")}, "b": {(Z, "d"): row("b", "d")}}
    assert ordering.reaches("a", (Z, "d"), installed, up_except())
    assert ordering.reaches("d", (Z, "d"), installed, up_except())  # the destination itself
    assert not ordering.reaches("a", (Z, "d"), installed, up_except(("b", "d")))
    assert not ordering.reaches("c", (Z, "d"), installed, up_except())  # nothing installed
    assert not ordering.reaches("a", (Z, "x"), installed, up_except())


def test_reaches_is_false_on_a_loop():
    installed = {"a": {(Z, "d"): row("a", "b", "d")}, "b": {(Z, "d"): row("b", "a", "d")}}
    assert not ordering.reaches("a", (Z, "d"), installed, up_except())


def test_a_failure_repairs_leaves_first():
    """Everything went through x to d; x fails. The new tree is a > b > c > d: c goes first
    (its new hop is the destination), then b once c has installed, then a."""
    link_up = up_except(("a", "x"), ("b", "x"), ("c", "x"), ("x", "d"))
    installed: dict = {}
    for r in "abc":
        install(installed, r, [row(r, "x", "d")])
    install(installed, "x", [row("x", "d")])
    target = {"a": [row("a", "b", "c", "d")], "b": [row("b", "c", "d")], "c": [row("c", "d")]}
    order = []
    for _ in range(5):
        staged = {r: ordering.stage(r, target[r], installed, link_up) for r in target}
        moved = [r for r in target if staged[r][0] == target[r]
                 and installed[r][(Z, "d")] != target[r][0]]
        order.append(moved)
        for r, (rows, _) in staged.items():
            install(installed, r, rows)  # each relay acknowledges what it was sent
    assert order[:3] == [["c"], ["b"], ["a"]]
    assert all(installed[r][(Z, "d")] == target[r][0] for r in target)
    assert all(ordering.stage(r, target[r], installed, link_up)[1] == 0 for r in target)


def test_held_rows_keep_what_is_installed_and_are_counted():
    installed: dict = {}
    install(installed, "a", [row("a", "x", "d"), row("a", "e")])
    install(installed, "b", [row("b", "x", "d")])
    target = [row("a", "b", "d"), row("a", "e")]
    rows, held = ordering.stage("a", target, installed, up_except(("x", "d")))
    assert held == 1
    assert rows == [row("a", "x", "d"), row("a", "e")]


def test_new_rows_and_rows_on_the_same_next_hop_go_at_once():
    installed: dict = {}
    install(installed, "a", [row("a", "b", "c")])
    target = [row("a", "b", "d", "c"), row("a", "f")]  # same next hop; nothing installed for f
    rows, held = ordering.stage("a", target, installed, up_except())
    assert (rows, held) == (target, 0)


def test_engine_tables_install_completely_within_their_depth_after_any_single_failure():
    """Random meshes, engine-computed routes before and after removing a region: staging
    each round and installing what was sent converges to the target in at most as many
    rounds as the longest path, and no row is ever moved onto a hop that does not reach."""
    rng = random.Random(7)
    for trial in range(20):
        names = [f"r{i:02d}" for i in range(rng.randint(5, 12))]
        links = [routing.Link(a, b, rng.uniform(5, 200)) for a in names for b in names
                 if a < b and rng.random() < 0.6]
        links += [routing.Link(b.dst, b.src, b.rtt_ms) for b in links]
        graph = routing.build_graph(names, links)
        policy = Policy({Z: Zone(Z, frozenset(names))})
        before = engine.compute(graph, policy)
        failed = rng.choice(names)
        after_graph = graph.copy()
        after_graph.remove_node(failed)
        after = engine.compute(after_graph, policy)
        installed: dict = {}
        for r in names:
            install(installed, r, before.table(r))
        survivors = [r for r in names if r != failed]
        target = {r: after.table(r) for r in survivors}
        depth = max((len(x.path) for rows in target.values() for x in rows), default=1)
        for _ in range(depth + 1):
            staged = {r: ordering.stage(r, target[r], installed, after_graph.has_edge)
                      for r in survivors}
            for r, (rows, _) in staged.items():
                for x in rows:
                    old = installed[r].get((x.zone, x.dst))
                    if old is not None and old.next_hop != x.next_hop:
                        assert ordering.reaches(x.next_hop, (x.zone, x.dst), installed,
                                                after_graph.has_edge), (trial, r, x)
            for r, (rows, _) in staged.items():
                install(installed, r, rows)
        held = {r: ordering.stage(r, target[r], installed, after_graph.has_edge)[1]
                for r in survivors}
        assert not any(held.values()), (trial, held)


def test_nothing_is_ready_through_a_region_that_is_gone_but_it_may_be_the_destination():
    installed: dict = {}
    install(installed, "b", [row("b", "x", "d"), row("b", "x")])
    install(installed, "x", [row("x", "d")])
    gone = frozenset({"x"})
    assert ordering.reaches("b", (Z, "d"), installed, up_except())
    assert not ordering.reaches("b", (Z, "d"), installed, up_except(), gone)
    assert ordering.reaches("b", (Z, "x"), installed, up_except(), gone)
    install(installed, "a", [row("a", "c", "d")])
    rows, held = ordering.stage("a", [row("a", "b", "x", "d")], installed, up_except(), gone)
    assert held == 1 and rows == [row("a", "c", "d")]
