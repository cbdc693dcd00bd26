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
