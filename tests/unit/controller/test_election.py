"""The election core (controller/election.py): the lowest create revision leads; a replica
leads only while its key is that one and its lease cannot have expired; renewals at a third of
the TTL; a lost lease or key means campaigning again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.election import Campaign, Candidate, leader_of


def cand(replica: str, rev: int) -> Candidate:
    return Candidate(replica, f"{replica}:7000", f"/e/{replica}".encode(), rev)


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=8, unique=True))
def test_the_lowest_create_revision_leads(revisions):
    cands = [cand(f"r{i}", rev) for i, rev in enumerate(revisions)]
    assert leader_of(cands).create_revision == min(revisions)
    assert leader_of(reversed(cands)) == leader_of(cands)


def test_no_candidates_no_leader():
    assert leader_of([]) is None
    assert not Campaign("a").leads(0.0)


def test_a_replica_leads_while_its_key_is_first_and_its_lease_certainly_held():
    c = Campaign("a", ttl_s=3)
    assert c.must_campaign()
    c.campaigned(lease=11, key=b"/e/a", create_revision=5, asked_at=100.0)
    c.seen([cand("a", 5), cand("b", 9)])
    assert not c.must_campaign() and c.leads(100.5)
    assert not c.renew_due(100.5) and c.renew_due(101.0)  # a third of the TTL
    # not renewed: it stops leading before etcd could have let the key go
    assert c.leads(102.9) and not c.leads(103.0)
    c.renewed(asked_at=102.0, ttl_left=3)
    assert c.leads(104.9) and not c.renew_due(102.5)


def test_a_replica_behind_another_does_not_lead_until_the_other_goes():
    c = Campaign("b", ttl_s=3)
    c.campaigned(12, b"/e/b", 9, 0.0)
    c.seen([cand("a", 5), cand("b", 9)])
    assert not c.leads(0.1) and c.leader().replica == "a"
    c.deleted(b"/e/a")  # a's lease expired
    assert c.leads(0.2) and c.leader().replica == "b"


def test_a_key_written_again_is_a_new_candidate_not_the_old_leader():
    """Our key deleted and written by someone else (or again by us after a lost lease)
    carries a new create revision: the campaign's fence no longer matches."""
    c = Campaign("a", ttl_s=3)
    c.campaigned(11, b"/e/a", 5, 0.0)
    c.seen([cand("a", 5)])
    c.put(cand("a", 8))
    assert not c.leads(0.1)


@pytest.mark.parametrize("how", ["expired", "deleted", "vanished"])
def test_a_lost_lease_or_key_means_campaigning_again(how):
    c = Campaign("a", ttl_s=3)
    c.campaigned(11, b"/e/a", 5, 0.0)
    c.seen([cand("a", 5)])
    if how == "expired":
        c.renewed(asked_at=1.0, ttl_left=0)
    elif how == "deleted":
        c.deleted(b"/e/a")
    else:
        c.seen([cand("b", 9)])
    assert c.must_campaign() and not c.leads(1.1) and not c.renew_due(5.0)


def test_the_ttl_is_at_most_five_seconds():
    with pytest.raises(ValueError, match="TTL"):
        Campaign("a", ttl_s=6)
    with pytest.raises(ValueError, match="TTL"):
        Campaign("a", ttl_s=0)
