"""The cleanlab stage on small synthetic data whose flipped labels are known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

from flywheel_feedback.labeling import confident
from flywheel_feedback.labeling.confident import (
    _design,
    _distinct,
    _hash_ngrams,
    _predict,
    consensus,
    encode_features,
    encode_texts,
    find_issues,
    out_of_fold_probs,
)

NOISE = 0.1

GOOD = ["here is the fix {}: run the update and restart", "sure, the answer is {} and it works on every plan"]
BAD = ["sorry i cannot help with {} right now", "error: unable to process {} please try again later"]
PROMPTS = ["how do i reset {}", "what does {} cost", "why is {} slow today", "can you explain {}"]
SLOTS = ["billing", "password", "the api", "exports", "sso", "invoices", "the mobile app", "webhooks"]


def synthetic(
    n: int, k: int = 2, seed: int = 0
) -> tuple[pl.DataFrame, NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """(texts, features, noisy labels, truth, flipped): the truth shows in the wording and in the signals."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    slot = rng.choice(SLOTS, n)
    # most outputs word their class; 20% are drawn from either pool, so text alone does not settle it
    worded = np.where(rng.random(n) < 0.2, rng.integers(0, 2, n), np.minimum(truth, 1))
    outputs = [
        (GOOD if w else BAD)[rng.integers(2)].format(s) + f" class{t}" * (k > 2)
        for w, s, t in zip(worded, slot, truth, strict=True)
    ]
    prompts = [PROMPTS[rng.integers(4)].format(s) for s in slot]
    edit_ratio = np.clip(rng.normal(0.6 - 0.2 * truth, 0.15), 0, 1)
    retried = (rng.random(n) < np.where(truth == 0, 0.5, 0.1)).astype(np.float64)
    features = np.column_stack([edit_ratio, retried, rng.normal(size=n)])
    features[rng.random(features.shape) < 0.05] = np.nan
    flipped = rng.random(n) < NOISE
    labels = np.where(flipped, (truth + rng.integers(1, k, n)) % k, truth)
    return pl.DataFrame({"input_text": prompts, "output_text": outputs}), features, labels, truth, flipped


def test_flagged_items_are_mostly_the_flipped_ones() -> None:
    texts, features, labels, _, flipped = synthetic(4000)
    probs = out_of_fold_probs(texts, features, labels, cardinality=2)
    issues = find_issues(labels, probs)
    flagged = issues["is_issue"].to_numpy()
    precision = flipped[flagged].mean()
    assert flagged.sum() > 50
    assert precision >= 3 * NOISE, f"precision {precision:.3f} vs base rate {NOISE}"
    assert flagged[flipped].mean() > 0.5  # and it finds most of them
    quality = issues["label_quality"].to_numpy()
    assert quality[flipped].mean() < quality[~flipped].mean() - 0.3


def test_out_of_fold_probs_shape_and_determinism() -> None:
    texts, features, labels, _, _ = synthetic(1500)
    first = out_of_fold_probs(texts, features, labels, cardinality=2, folds=3, seed=7)
    again = out_of_fold_probs(texts, features, labels, cardinality=2, folds=3, seed=7)
    other = out_of_fold_probs(texts, features, labels, cardinality=2, folds=3, seed=8)
    assert first.shape == (1500, 2)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_text_inputs_are_interchangeable() -> None:
    texts, features, labels, _, _ = synthetic(800)
    joined = texts.select(pl.concat_str("input_text", "output_text", separator="\n")).to_series()
    from_list = out_of_fold_probs(joined.to_list(), features, labels, cardinality=2)
    from_series = out_of_fold_probs(joined, features, labels, cardinality=2)
    from_encoded = out_of_fold_probs(encode_texts(joined), features, labels, cardinality=2)
    assert np.array_equal(from_list, from_series)
    assert np.array_equal(from_list, from_encoded)
    from_frame = out_of_fold_probs(texts, pl.DataFrame(features, schema=["a", "b", "c"]), labels, cardinality=2)
    assert from_frame.shape == (800, 2)


def test_unlabeled_rows_get_predictions_but_never_issues() -> None:
    texts, features, labels, truth, _ = synthetic(3000)
    hidden = np.random.default_rng(1).random(3000) < 0.3
    partial = np.where(hidden, -1, labels)
    probs = out_of_fold_probs(texts, features, partial, cardinality=2)
    np.testing.assert_allclose(probs[hidden].sum(axis=1), 1.0)
    assert (probs[hidden].argmax(axis=1) == truth[hidden]).mean() > 0.8
    issues = find_issues(partial, probs)
    assert not issues["is_issue"].to_numpy()[hidden].any()
    assert issues["label_quality"].is_null().to_numpy().tolist() == hidden.tolist()
    assert issues["suggested_label"].to_numpy().tolist() == probs.argmax(axis=1).tolist()


def test_more_than_two_classes_and_a_training_cap() -> None:
    texts, features, labels, truth, flipped = synthetic(3000, k=3)
    probs = out_of_fold_probs(texts, features, labels, cardinality=3, max_train_rows=600)
    assert probs.shape == (3000, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == truth).mean() > 0.8
    flagged = find_issues(labels, probs)["is_issue"].to_numpy()
    assert flipped[flagged].mean() >= 3 * NOISE


def test_features_are_optional_and_missing_values_are_a_bin() -> None:
    texts, _, labels, _, _ = synthetic(600)
    assert out_of_fold_probs(texts, None, labels, cardinality=2).shape == (600, 2)
    with_none = np.array([[0.1, None], [None, 2.0], [0.3, 1.0]], dtype=object)
    bins = encode_features(with_none, 3)
    assert bins.columns.shape == (3, 2)
    assert bins.columns[0, 1] == bins.width - 1  # the last bin of the last feature is its missing bin


def test_scoring_per_distinct_text_matches_predict_proba() -> None:
    """The fold models never see a row-level matrix at prediction; the shortcut must equal sklearn's own."""
    texts, features, labels, _, _ = synthetic(500, k=3)
    encoded, bins = encode_texts(texts), encode_features(features, 500)
    rows = np.arange(500)
    design = _design(encoded, bins, rows)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(design[:400], labels[:400])
    np.testing.assert_allclose(
        _predict(model, encoded, bins, rows[400:], 3), model.predict_proba(design[400:]), atol=1e-5
    )


def test_hashing_counts_the_ngrams_scikit_learn_would() -> None:
    texts = ["Hello, hello WORLD!", "a b c", "", "naïve café – über_alles e2e", "x", "one two three two one"]
    ours = _hash_ngrams(pl.Series(texts))
    theirs = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False).transform(texts)
    for i in range(len(texts)):  # different hash functions, same bag of n-grams: the same normalised counts
        np.testing.assert_allclose(np.sort(ours[i].data), np.sort(theirs[i].data), rtol=1e-6)


def test_distinct_texts_are_exact_and_hashing_in_chunks_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    column = pl.Series(["b", "a", "b", "", "c", "a"])
    codes, distinct = _distinct(column)
    assert distinct.gather(codes).to_list() == column.to_list()
    assert sorted(distinct.to_list()) == ["", "a", "b", "c"]
    whole = encode_texts(column).matrices[0]
    monkeypatch.setattr(confident, "HASH_CHUNK", 2)
    assert (encode_texts(column).matrices[0] != whole).nnz == 0
    # were two texts ever to share a 64-bit hash, the codes must still be exact
    monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: pl.Series([7] * len(self), dtype=pl.UInt64))
    codes, distinct = _distinct(column)
    assert distinct.gather(codes).to_list() == column.to_list()
    assert len(distinct) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.array([0, 1, 2])}, r"expected labels as a 1-D integer array of 4 classes in \[-1, 1\]"),
        ({"labels": np.array([0.0, 1.0, 0.0, 1.0])}, "got ndarray of shape \\(4,\\), dtype float64"),
        ({"cardinality": 1}, "expected cardinality to be an integer >= 2, got 1"),
        ({"features": np.zeros((3, 2))}, r"expected features of shape \(4, m\) to match the 4 texts, got \(3, 2\)"),
        ({"texts": [1, 2, 3, 4]}, "expected one or more string columns of texts"),
        ({"labels": np.array([0, 0, 0, -1])}, "at least 2 labeled rows .* covering at least 2 classes"),
        ({"folds": 1}, "expected folds to be an integer >= 2, got 1"),
    ],
)
def test_out_of_fold_probs_says_what_it_expected(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "texts": ["a b", "c d", "e f", "g h"],
        "features": None,
        "labels": np.array([0, 1, 0, 1]),
        "cardinality": 2,
        "folds": 2,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        out_of_fold_probs(**args)  # type: ignore[arg-type]


def test_find_issues_on_degenerate_batches() -> None:
    assert find_issues(np.array([], dtype=np.int64), np.zeros((0, 2))).height == 0
    one_class = find_issues(np.array([1, 1, -1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    assert one_class["is_issue"].to_list() == [False, False, False]
    assert one_class["label_quality"].to_list() == pytest.approx([0.1, 0.8, None])
    nothing = find_issues(np.array([-1, -1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert nothing["label_quality"].null_count() == 2 and nothing["suggested_label"].to_list() == [0, 1]


def test_find_issues_validates_once() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match=r"expected labels as a 1-D integer array of 2 classes in \[-1, 1\]"):
        find_issues(np.array([0, 2]), probs)
    with pytest.raises(ValueError, match=r"of 2 classes .* got ndarray of shape \(3,\)"):
        find_issues(np.array([0, 1, 1]), probs)
    with pytest.raises(ValueError, match="rows to be probabilities summing to 1"):
        find_issues(np.array([0, 1]), np.array([[0.9, 0.9], [0.2, 0.8]]))
    with pytest.raises(ValueError, match=r"finite 2-D float array \(n, k >= 2\), got ndarray of shape \(2,\)"):
        find_issues(np.array([0, 1]), np.array([0.9, 0.1]))


def noisy_annotators(n: int, seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Three annotators: 95% and 90% right, and one who is right half the time; 20% of cells unannotated."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    columns = [np.where(rng.random(n) < accuracy, truth, 1 - truth) for accuracy in (0.95, 0.9, 0.5)]
    annotations = np.column_stack(columns).astype(np.float64)
    annotations[rng.random(annotations.shape) < 0.2] = np.nan
    return annotations, truth


def test_consensus_outvotes_a_noisy_annotator() -> None:
    annotations, truth = noisy_annotators(400)
    result = consensus(annotations)
    assert result.columns == ["consensus_label", "consensus_quality_score", "annotator_agreement", "num_annotations"]
    labeled = result["num_annotations"].to_numpy() > 0
    agreed = result["consensus_label"].to_numpy()[labeled] == truth[labeled]
    noisy = annotations[:, 2][labeled] == truth[labeled]
    assert agreed.mean() > 0.85 > noisy.mean() + 0.2
    # a split vote scores lower than a unanimous one
    agreement = result["annotator_agreement"].to_numpy()
    quality = result["consensus_quality_score"].to_numpy()
    assert quality[agreement < 1].mean() < quality[agreement == 1].mean()

    probs = np.where(truth[:, None] == np.arange(2), 0.85, 0.15)
    with_model = consensus(annotations, probs)
    assert (with_model["consensus_label"].to_numpy()[labeled] == truth[labeled]).mean() > agreed.mean()


def test_consensus_single_and_missing_annotations() -> None:
    annotations, _ = noisy_annotators(60)
    annotations[0] = [1.0, np.nan, np.nan]  # one annotator
    annotations[1] = np.nan  # nobody
    result = consensus(annotations)
    assert result.row(0) == (1, result["consensus_quality_score"][0], 1.0, 1)
    assert result.row(1) == (None, None, None, 0)

    only_one_each = consensus(
        np.array([[0.0, np.nan], [np.nan, 1.0], [1.0, np.nan]]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    )
    assert only_one_each["consensus_label"].to_list() == [0, 1, 1]
    assert only_one_each["consensus_quality_score"].to_list() == pytest.approx([0.9, 0.8, 0.3])
    assert consensus(np.array([[0.0], [1.0]]))["consensus_label"].to_list() == [0, 1]


def test_consensus_validates() -> None:
    with pytest.raises(ValueError, match="expected annotations as a 2-D numeric array"):
        consensus(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="class indices >= 0 or NaN"):
        consensus(np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match=r"pred_probs of shape \(1, k >= 3\) .* got \(1, 2\)"):
        consensus(np.array([[2.0, 1.0]]), np.array([[0.5, 0.5]]))
