"""Distributed review: the queue, exclusive and expiring claims, verdicts, audit, affected products.

Products here are in project ``galaxies`` (alice reviews it; admin administers everything;
bob is a plain member; eve is an outside user).
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from musewise.exceptions import NotFoundError, PermissionDeniedError
from musewise.qc import (
    AlreadyClaimedError,
    claim,
    current_claim,
    mark_affected,
    queue,
    review,
    review_history,
    review_state,
    unclaim,
)
from musewise.products import testing as pt
from musewise.qc import testing as qct
from musewise.vocabulary import Privilege


@pytest.fixture
def chain(archive, tmp_path):
    """master bias -> master flat -> cube, all in project galaxies; returns their records."""
    bias, _ = qct.bias_product(archive, tmp_path / "b", privilege=Privilege.PROJECT, project="galaxies")
    import numpy as np

    flat_path = pt.write_master(tmp_path / "MASTER_FLAT-01.fits", "MASTER_FLAT", np.ones((96, 96)),
                                 datetime(2026, 11, 20, 19))
    flat = qct.archive_product(archive, flat_path, "muse_flat", [bias.id], privilege=Privilege.PROJECT,
                               project="galaxies")
    cube_path = pt.write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2))
    cube = qct.archive_product(archive, cube_path, "muse_scipost", [flat.id], ifu=None, category="DATACUBE_FINAL",
                               privilege=Privilege.PROJECT, project="galaxies")
    return bias, flat, cube


def test_queue_lists_unchecked_products_visible_to_the_user(archive, chain):
    bias, flat, cube = chain
    alice, carol, eve = archive.as_user("alice"), archive.as_user("carol"), archive.as_user("eve")
    items = queue(alice)
    assert {(i.dataset_id, i.ifu) for i in items} == {(bias.id, 1), (flat.id, 1), (cube.id, 0)}
    assert all(i.state == "unchecked" and i.can_review for i in items)
    assert queue(carol) == [] and queue(eve) == []  # project data: not visible outside galaxies
    assert {i.dataset_id for i in queue(archive.as_user("bob"))} == {bias.id, flat.id, cube.id}
    assert queue(archive.as_user("bob"), reviewable_only=True) == []  # bob is not a reviewer
    assert [i.dataset_id for i in queue(alice, category="MASTER_FLAT")] == [flat.id]


def test_claims_are_exclusive_and_audited(archive, chain):
    bias = chain[0]
    alice = archive.as_user("alice")
    c = claim(alice, bias.id)
    assert c.user == "alice" and c.expires > c.claimed
    with pytest.raises(AlreadyClaimedError, match="claimed by 'alice'"):
        claim(archive, bias.id)
    with pytest.raises(AlreadyClaimedError):
        review(archive, bias.id, 1, True, "good", "looks fine")
    with pytest.raises(PermissionDeniedError):
        claim(archive.as_user("bob"), bias.id)  # members who may not review cannot claim
    with pytest.raises(NotFoundError):
        claim(archive.as_user("eve"), bias.id)
    assert claim(alice, bias.id).user == "alice"  # renewing one's own claim is fine
    (item,) = [i for i in queue(archive) if i.dataset_id == bias.id]
    assert item.claimed_by == "alice"
    with pytest.raises(PermissionDeniedError):
        unclaim(archive.as_user("bob"), bias.id)
    unclaim(alice, bias.id)
    assert current_claim(archive, bias.id) is None
    assert claim(archive, bias.id).user == "admin"
    actions = [(e["user"], e["action"]) for e in review_history(archive, bias.id)]
    assert actions == [("alice", "claim"), ("alice", "claim"), ("alice", "unclaim"), ("admin", "claim")]


def test_claims_expire(archive, chain):
    bias = chain[0]
    claim(archive.as_user("alice"), bias.id, minutes=0.001)  # 60 ms
    time.sleep(0.3)
    assert current_claim(archive, bias.id) is None
    assert claim(archive, bias.id).user == "admin"
    expired = [e for e in review_history(archive, bias.id) if e["action"] == "claim_expired"]
    assert len(expired) == 1 and "claim of alice" in expired[0]["comment"] and expired[0]["user"] == "admin"


def test_review_sets_validity_with_audit_and_leaves_queue(archive, chain):
    bias = chain[0]
    alice = archive.as_user("alice")
    claim(alice, bias.id)
    with pytest.raises(ValueError, match="comment"):
        review(alice, bias.id, 1, True, "good", "  ")
    out = review(alice, bias.id, 1, True, "good", "RON and levels nominal in all quadrants")
    assert out.record.ifus[0].flag == "good" and out.record.ifus[0].updated_by == "alice"
    assert out.affected == () and out.validity_recorded
    hist = archive.validity_history(bias.id)
    assert (hist[-1]["user"], hist[-1]["flag_before"], hist[-1]["flag_after"]) == ("alice", "unchecked", "good")
    assert current_claim(archive, bias.id) is None  # a verdict ends the claim
    assert bias.id not in {i.dataset_id for i in queue(archive)}
    assert review_state(archive, bias.id)[1]["state"] == "reviewed"
    actions = [e["action"] for e in review_history(archive, bias.id)]
    assert actions[0] == "claim" and "review" in actions and "validity" in actions
    with pytest.raises(PermissionDeniedError):
        review(archive.as_user("bob"), bias.id, 1, False, "bad", "I do not like it")


def test_invalidating_marks_dependents_affected(archive, chain):
    bias, flat, cube = chain
    alice = archive.as_user("alice")
    out = review(alice, bias.id, 1, False, "bad", "hot column across quadrant 2")
    assert not out.record.is_valid
    assert {(a.dataset_id, a.ifu) for a in out.affected} == {(flat.id, 1), (cube.id, 0)}
    f = archive.get(flat.id).ifus[0]
    # Affected is a warning and a review state, not an invalidation: a person decides.
    assert f.is_valid and f.flag == "warning" and f.comment == f"affected by invalid #{bias.id}"
    st = review_state(archive, flat.id)[1]
    assert st["state"] == "affected" and st["source"] == bias.id
    assert review_state(archive, cube.id)[0]["state"] == "affected"
    q = {(i.dataset_id, i.state) for i in queue(alice)}
    assert (flat.id, "affected") in q and (cube.id, "affected") in q and bias.id not in {d for d, _ in q}
    assert any(e["action"] == "affected" for e in review_history(archive, cube.id))
    # A product already judged bad stays bad when marked affected again.
    review(alice, flat.id, 1, True, "bad", "traces wobble")
    mark_affected(alice, bias.id, 1)
    assert archive.get(flat.id).ifus[0].flag == "bad"
