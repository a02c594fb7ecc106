"""Reviewing a picker's picks: the order they come in, accept / reject / correct, saving and resuming."""

import json

import numpy as np
import pytest

from deepfinder.core.annotation import ACCEPTED, PENDING, REJECTED, Review
from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable


def _picks():
    return ParticleTable(
        tomo=["a", "a", "b", "b", "a", "b"],
        class_id=[2, 1, 1, 2, 1, 1],
        xyz=[[i, 2 * i, 3 * i] for i in range(6)],
        score=[0.5, 0.9, 0.2, 0.1, np.nan, 0.6],
    )


def test_picks_come_class_by_class_lowest_score_first_unscored_last():
    review = Review(_picks())
    assert list(review.order) == [2, 5, 1, 4, 3, 0]


def test_accepted_picks_carry_their_corrections_and_rejected_ones_stay_as_picked():
    review = Review(_picks())
    review.accept(1)
    review.reject(2)
    review.set_class(3, 1)
    review.move(5, [10, 11, 12])
    review.reject(0)
    accepted = review.accepted()
    assert list(accepted.tomo) == ["a", "b", "b"]
    assert list(accepted.class_id) == [1, 1, 1]
    np.testing.assert_allclose(accepted.xyz, [[1, 2, 3], [3, 6, 9], [10, 11, 12]])
    np.testing.assert_allclose(accepted.score, [0.9, 0.1, 0.6])
    assert review.counts() == {PENDING: 1, ACCEPTED: 3, REJECTED: 2}
    rejected = review.rejected()  # as picked: where the picker was wrong
    assert list(rejected.tomo) == ["a", "b"] and list(rejected.class_id) == [2, 1]
    np.testing.assert_allclose(rejected.xyz, [[0, 0, 0], [2, 4, 6]])
    review.reset(3)
    assert review.status[3] == PENDING and review.class_id[3] == 2


def test_next_pending_skips_reviewed_picks_and_wraps_around():
    review = Review(_picks())
    for index in (5, 1):  # positions 1 and 2 in the order
        review.accept(index)
    assert review.next_pending(0) == 3
    assert review.next_pending(5) == 0
    for index in range(len(review)):
        review.reject(index)
    assert review.next_pending(0) is None


def test_a_saved_review_resumes_where_it_stopped(tmp_path):
    review = Review(_picks())
    review.reject(2)
    review.set_class(3, 1)
    review.move(4, [7, 8, 9])
    review.save(tmp_path / "review.json")
    resumed = Review.resume(_picks(), tmp_path / "review.json")
    assert list(resumed.status) == list(review.status)
    assert list(resumed.class_id) == list(review.class_id)
    np.testing.assert_allclose(resumed.xyz, review.xyz)
    np.testing.assert_allclose(resumed.accepted().xyz, review.accepted().xyz)
    assert Review.saved_counts(tmp_path / "review.json") == {PENDING: 3, ACCEPTED: 2, REJECTED: 1}


def test_a_review_of_other_picks_is_refused(tmp_path):
    Review(_picks()).save(tmp_path / "review.json")
    other = _picks().select(np.arange(5))
    with pytest.raises(InputError, match="review of other picks"):
        Review.resume(other, tmp_path / "review.json")
    moved = _picks()
    moved.xyz[0] += 1
    with pytest.raises(InputError, match="review of other picks"):
        Review.resume(moved, tmp_path / "review.json")
    state = json.loads((tmp_path / "review.json").read_text())
    state["picks"][0]["status"] = "maybe"
    (tmp_path / "review.json").write_text(json.dumps(state))
    with pytest.raises(InputError, match="unknown status 'maybe'"):
        Review.resume(_picks(), tmp_path / "review.json")
