"""Node names and the transit node choice (skymesh/nodes.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skymesh import nodes


def test_a_destination_names_a_region_or_one_of_its_nodes():
    assert nodes.address("fra", "n2") == "fra/n2"
    assert nodes.parse("fra/n2") == ("fra", "n2")
    assert nodes.parse("fra") == ("fra", "")
    assert nodes.region_of("fra/n2") == nodes.region_of("fra") == "fra"


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 65, "n 1", ".", "..", "é"])
def test_a_node_id_that_cannot_name_a_node_is_refused(bad):
    with pytest.raises(nodes.BadNodeName, match="node id"):
        nodes.check_node_id(bad)


def test_senders_spread_over_a_regions_nodes():
    chosen = Counter(nodes.choose(f"sender-{i}", ["n1", "n2", "n3"]) for i in range(600))
    assert set(chosen) == {"n1", "n2", "n3"}
    assert min(chosen.values()) > 150  # about 200 each


@given(st.lists(st.text("abcdef0123", min_size=1, max_size=4), min_size=2, max_size=6,
                unique=True), st.text(min_size=1, max_size=8))
def test_a_node_leaving_moves_only_the_senders_that_chose_it(candidates, sender):
    first = nodes.choose(sender, candidates)
    other = next(c for c in candidates if c != first)
    # another node leaving changes nothing; the chosen one leaving moves to the next choice
    assert nodes.choose(sender, [c for c in candidates if c != other]) == first
    after = nodes.choose(sender, [c for c in candidates if c != first])
    assert after == nodes.ranked(sender, candidates)[1]
    assert nodes.choose(sender, candidates, avoid=[first]) == after
    assert nodes.choose(sender, candidates, avoid=candidates) == first
    assert nodes.choose(sender, []) is None


def test_weights_share_a_regions_transit_in_proportion():
    """A node of weight 1/4 beside one of weight 1 is chosen by about a fifth of the
    senders (weighted rendezvous)."""
    weights = {"n1": 0.25, "n2": 1.0}
    chosen = Counter(nodes.choose(f"fra/s{i}", ["n1", "n2"], weights=weights)
                     for i in range(4000))
    assert 0.17 < chosen["n1"] / 4000 < 0.23


@given(st.lists(st.text("abcdef0123", min_size=1, max_size=4), min_size=2, max_size=6,
                unique=True), st.text(min_size=1, max_size=8))
def test_equal_weights_choose_as_no_weights(candidates, sender):
    assert nodes.ranked(sender, candidates, {c: 0.5 for c in candidates}) == \
        nodes.ranked(sender, candidates)


@given(st.lists(st.text("abcdef0123", min_size=1, max_size=4), min_size=2, max_size=5,
                unique=True), st.text(min_size=1, max_size=8),
       st.lists(st.sampled_from([0.125, 0.25, 0.5, 1.0]), min_size=5, max_size=5),
       st.sampled_from([0.125, 0.25, 0.5, 1.0]))
def test_a_weight_moving_moves_only_the_senders_it_decides(candidates, sender, before, w):
    """When one node's weight rises, the senders that chose it keep it, and the others
    either keep their choice or move to it; when it falls, only its own senders move."""
    old = dict(zip(candidates, before, strict=False))
    node = candidates[0]
    new = {**old, node: w}
    was, now = nodes.choose(sender, candidates, weights=old), \
        nodes.choose(sender, candidates, weights=new)
    if w >= old[node]:
        assert now == was or now == node
        if was == node:
            assert now == node
    else:
        assert now == was or was == node


def test_transit_weights_follow_the_client_sessions_each_node_holds():
    # 400 sessions against 100: a quarter of the other's weight (in eighths)
    assert nodes.transit_weights({"n1": 400, "n2": 100}) == {"n1": 0.25, "n2": 1.0}
    assert nodes.transit_weights({"n1": 400, "n2": 300}) == {"n1": 0.75, "n2": 1.0}
    # below the floor load makes no difference
    assert nodes.transit_weights({"n1": 10, "n2": 0}) == {"n1": 1.0, "n2": 1.0}
    # at least one step, however loaded
    assert nodes.transit_weights({"n1": 10**9, "n2": 0})["n1"] == 1 / nodes.WEIGHT_STEPS
    assert nodes.transit_weights({}) == {}
