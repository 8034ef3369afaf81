from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from flywheel_feedback.labeling.label_model import LabelModel, _group_rows, majority_vote

ACCURACY = np.array([0.75, 0.8, 0.85, 0.9, 0.95, 0.8])
COVERAGE = np.array([0.4, 0.5, 0.3, 0.4, 0.2, 0.6])


def draw(
    n: int, prior: list[float], *, seed: int = 0, accuracy: NDArray[np.float64] = ACCURACY
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Items from a known model: function j fires with COVERAGE[j], then is right with accuracy[j] and
    otherwise votes one of the other classes uniformly."""
    rng = np.random.default_rng(seed)
    k = len(prior)
    truth = rng.choice(k, size=n, p=prior)
    fires = rng.random((n, len(accuracy))) < COVERAGE[: len(accuracy)]
    right = rng.random((n, len(accuracy))) < accuracy
    wrong = (truth[:, None] + rng.integers(1, k, size=(n, len(accuracy)))) % k
    return np.where(fires, np.where(right, truth[:, None], wrong), -1), truth


@pytest.mark.parametrize("prior", [[0.5, 0.5], [0.8, 0.2], [0.5, 0.3, 0.2]])
def test_recovers_the_accuracies_and_class_balance_it_was_drawn_from(prior: list[float]) -> None:
    votes, truth = draw(100_000, prior)
    # balance_strength=0: no pull toward the vote shares, which are flatter than the truth with noisy functions.
    model = LabelModel(len(prior), balance_strength=0.0).fit(votes)
    np.testing.assert_allclose(model.accuracies_, ACCURACY, atol=0.01)
    np.testing.assert_allclose(model.class_balance_, prior, atol=0.01)
    proba = model.predict_proba(votes)
    assert proba.shape == (len(votes), len(prior))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    ours = (model.predict(votes) == truth).mean()
    assert ours > (majority_vote(votes, len(prior)) == truth).mean() + 0.01


def test_gold_rows_are_clamped_and_tell_which_function_to_trust() -> None:
    # Two functions that disagree on a quarter of the rows: votes alone cannot say which one is right, so the
    # model learns them as equals; 5% of the rows with gold reveal that the first is right 95% of the time.
    rng = np.random.default_rng(1)
    n = 20_000
    truth = rng.integers(0, 2, size=n)

    def function(accuracy: float) -> NDArray[np.int64]:
        vote = np.where(rng.random(n) < accuracy, truth, 1 - truth)
        return np.where(rng.random(n) < 0.9, vote, -1)

    votes = np.column_stack([function(0.95), function(0.75)])
    gold = np.where(rng.random(n) < 0.05, truth, -1)
    unlabelled = gold == -1

    alone = LabelModel(2).fit(votes)
    helped = LabelModel(2).fit(votes, gold=gold)
    assert abs(alone.accuracies_[0] - alone.accuracies_[1]) < 0.02
    np.testing.assert_allclose(helped.accuracies_, [0.95, 0.75], atol=0.01)
    accuracy_alone = (alone.predict(votes)[unlabelled] == truth[unlabelled]).mean()
    accuracy_helped = (helped.predict(votes)[unlabelled] == truth[unlabelled]).mean()
    assert accuracy_helped > accuracy_alone + 0.05


def test_gold_that_corrects_a_misleading_function_is_kept_with_its_class_balance() -> None:
    # A function voting class 1 on 60% of items whatever the truth: without gold, EM cannot tell it from a good
    # one, and the balance follows it. Gold on every row shows it up; the fit with gold labels more rows right.
    rng = np.random.default_rng(5)
    truth = rng.choice(2, size=4_000, p=[0.7, 0.3])
    columns = [
        np.where(rng.random(4_000) < coverage, np.where(rng.random(4_000) < accuracy, truth, 1 - truth), -1)
        for accuracy, coverage in [(0.8, 0.3), (0.75, 0.3), (0.85, 0.2)]
    ]
    votes = np.column_stack([*columns, np.where(rng.random(4_000) < 0.6, 1, -1)])
    plain = LabelModel(2).fit(votes)
    helped = LabelModel(2).fit(votes, gold=truth)
    np.testing.assert_allclose(helped.class_balance_, np.bincount(truth) / len(truth), atol=0.01)
    assert (helped.predict(votes) == truth).mean() > (plain.predict(votes) == truth).mean() + 0.01


def test_gold_that_changes_no_label_leaves_the_fit_without_gold() -> None:
    # Well-specified data: the votes already give the labels gold would; a fit with gold is kept only when
    # held-out gold rows say it labels better, so here nothing changes.
    votes, truth = draw(2_000, [0.7, 0.3], seed=3)
    given = np.where(np.random.default_rng(1).random(len(truth)) < 0.05, truth, -1)
    np.testing.assert_array_equal(LabelModel(2).fit(votes, gold=given).predict(votes),
                                  LabelModel(2).fit(votes).predict(votes))


def test_rows_where_every_function_abstains_get_the_class_prior() -> None:
    votes, _ = draw(5_000, [0.7, 0.3], seed=4)
    model = LabelModel(2).fit(votes)
    proba = model.predict_proba(np.full((3, votes.shape[1]), -1))
    np.testing.assert_allclose(proba, np.tile(model.class_balance_, (3, 1)))
    silent = np.full((3, votes.shape[1]), -1)
    np.testing.assert_array_equal(model.predict(silent, no_vote="prior"), [0, 0, 0])


def test_an_all_abstain_column_gives_no_nans() -> None:
    votes, truth = draw(5_000, [0.5, 0.3, 0.2], seed=5)
    votes[:, 2] = -1
    model = LabelModel(3).fit(votes)
    assert np.isfinite(model.outcome_probs_).all()
    assert model.accuracies_[2] == pytest.approx(1 / 3)  # never votes: no better than chance
    assert np.isfinite(model.predict_proba(votes)).all()
    assert (model.predict(votes) == truth).mean() > 0.8


def test_deterministic_given_seed_and_ties_follow_the_seed() -> None:
    votes, _ = draw(5_000, [0.5, 0.5], seed=6)
    first, second = LabelModel(2, seed=7).fit(votes), LabelModel(2, seed=7).fit(votes)
    np.testing.assert_array_equal(first.outcome_probs_, second.outcome_probs_)
    assert first.version == second.version and first.version.startswith("LabelModel-")
    assert first.version != LabelModel(2).fit(votes[:4_000]).version

    # A fixed uniform class balance makes every all-abstain row an exact tie.
    silent = np.full((200, votes.shape[1]), -1)
    tied = LabelModel(2, class_balance=[0.5, 0.5], seed=7).fit(votes)
    picks = tied.predict(silent)
    np.testing.assert_array_equal(picks, tied.predict(silent))
    assert set(picks) == {0, 1}
    np.testing.assert_array_equal(picks, LabelModel(2, class_balance=[0.5, 0.5], seed=7).fit(votes).predict(silent))


def test_majority_vote_counts_votes_and_breaks_ties_as_told() -> None:
    votes = np.array([[0, 0, 1], [1, -1, 1], [0, 1, -1], [-1, -1, -1], [2, 2, 0]])
    np.testing.assert_array_equal(majority_vote(votes, 3, tie_break="abstain"), [0, 1, -1, -1, 2])
    random_ties = majority_vote(votes, 3, seed=0)
    np.testing.assert_array_equal(random_ties[[0, 1, 4]], [0, 1, 2])
    assert random_ties[2] in (0, 1)
    np.testing.assert_array_equal(random_ties, majority_vote(votes, 3, seed=0))


@pytest.mark.parametrize(
    ("votes", "message"),
    [
        (np.array([0, 1, -1]), r"expected a 2-D integer array with values in \[-1, 1\], got shape \(3,\)"),
        (np.array([[0.0, 1.0]]), r"expected a 2-D integer array .* dtype float64"),
        (np.array([[0, 2]]), r"expected a 2-D integer array with values in \[-1, 1\], got .* values in \[0, 2\]"),
        (np.array([[0, -2]]), r"values in \[-2, 0\]"),
        (np.zeros((0, 3), dtype=int), r"expected at least one row and one labeling function"),
    ],
)
def test_fit_says_what_it_expected_and_what_arrived(votes: NDArray[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelModel(2).fit(votes)


def test_gold_and_predict_inputs_are_validated() -> None:
    votes = np.array([[0, 1], [1, -1], [-1, 0]])
    with pytest.raises(ValueError, match=r"expected gold as a 1-D integer array of 3 labels in \[-1, 1\]"):
        LabelModel(2).fit(votes, gold=np.array([0, 1]))
    with pytest.raises(RuntimeError, match="not fitted"):
        LabelModel(2).predict(votes)
    model = LabelModel(2).fit(votes)
    with pytest.raises(ValueError, match="expected 2 labeling function columns as in fit, got 3"):
        model.predict(np.array([[0, 1, 1]]))
    assert model.predict_proba(np.zeros((0, 2), dtype=int)).shape == (0, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cardinality": 1}, "cardinality to be an integer >= 2"),
        ({"min_lift": 0.5}, "min_lift to be a number >= 1"),
        ({"abstain_weight": 2}, r"abstain_weight to be a number in \[0, 1\]"),
        ({"max_iter": 0}, "max_iter to be an integer >= 1"),
        ({"class_balance": [0.2, 0.2]}, "class_balance to be 2 positive numbers summing to 1"),
    ],
)
def test_options_are_validated(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelModel(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rows", "columns", "base"), [(5_000, 6, 3), (50, 30, 3), (300, 70, 3)])
def test_grouping_matches_numpy_unique(rows: int, columns: int, base: int) -> None:
    # Three paths: bincount over a small key space, sort of packed keys, np.unique(axis=0) for wide rows.
    codes = np.random.default_rng(8).integers(0, base, size=(rows, columns))
    codes[: rows // 2] = codes[0]  # plenty of repeated patterns
    patterns, inverse, counts = _group_rows(codes, base)
    expected, expected_inverse, expected_counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(patterns, expected)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))
    np.testing.assert_array_equal(counts, expected_counts)
