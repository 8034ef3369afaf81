"""The cleanlab stage: out-of-fold predicted probabilities, label issues, and multi-annotator consensus.

Confident learning needs, for every labeled item, class probabilities from a model that never saw that item.
The model here is scikit-learn's SGDClassifier (log loss) over hashed word 1-2 grams of the text columns and
quantile bins of the signal features. Four choices keep a million interactions to seconds:
- Texts are hashed once per distinct string (product traffic repeats itself), and rows point at them by code.
- Hashing runs in polars (tokens as sklearn's default pattern finds them, bigram hashes combined from unigram
  hashes in numpy): 3.6 us per text against HashingVectorizer's 24, so text that never repeats stays cheap.
- A fold's model is fit on about `max_train_rows` rows (a stratified sample of the other folds): on the bench
  data a fold model fit on 250k rows came within 0.4% of the held-out log loss of one fit on all 800k (0.4318
  vs 0.4303) in under a third of the time.
- Predictions are never made on a row-level matrix: a row's score is its texts' scores (computed once per
  distinct text) plus its feature bins' weights, so nothing of size rows x vocabulary is ever built.
Feature bins (per-feature quantiles, plus one bin for missing) need no scaling, take NaN as information, and
let a linear model bend: a retry after 5 s and one after 5 min can mean different things.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl
import scipy.sparse as sp
from cleanlab.filter import find_label_issues
from cleanlab.multiannotator import get_label_quality_multiannotator
from cleanlab.rank import get_label_quality_scores
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import normalize

from flywheel_feedback.labeling.lf import ABSTAIN

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
TextInput = pl.DataFrame | pl.Series | Sequence[str]

HASH_FEATURES: Final = 2**18  # per text column
HASH_CHUNK: Final = 50_000  # distinct texts per hashing pass
TOKEN_PATTERN: Final = r"\b\w\w+\b"  # scikit-learn's default: words of two or more characters
FEATURE_BINS: Final = 16
SGD_UPDATES: Final = 500_000  # per fold model: epochs = this / training rows, within [2, MAX_EPOCHS]
MAX_EPOCHS: Final = 50
CONSENSUS_SMOOTHING: Final = 1.0  # pseudo-votes per class, spread by the overall class frequencies


# ---------------------------------------------------------------------------------------------------------------
# Encoding: texts and features, once per call, shared by every fold


@dataclass(frozen=True)
class EncodedTexts:
    """Text columns hashed once per distinct string: row i of column c is `matrices[c][codes[c][i]]`."""

    codes: tuple[IntArray, ...]
    matrices: tuple[sp.csr_matrix, ...]

    @property
    def n_rows(self) -> int:
        return len(self.codes[0])


@dataclass(frozen=True)
class EncodedFeatures:
    """Each feature's bin as a column index into a one-hot block of `width` columns (offsets included)."""

    columns: NDArray[np.int32]  # (n, m)
    width: int


def encode_texts(texts: TextInput) -> EncodedTexts:
    """Hash each text column (word 1-2 grams, l2-normalised) once per distinct string.

    `texts` is one string per row (a list or a polars Series), or a polars DataFrame of string columns, e.g.
    `items.select("input_text", "output_text")`: each column gets its own block of features, so "sorry" in
    the output and "sorry" in the prompt are different evidence. Null counts as the empty string.
    """
    frame = _text_frame(texts)
    codes: list[IntArray] = []
    matrices: list[sp.csr_matrix] = []
    for name in frame.columns:
        column_codes, distinct = _distinct(frame.get_column(name).fill_null(""))
        codes.append(column_codes)
        # in chunks: arrays that stay small are reused from the allocator instead of faulted in (2x faster here)
        chunks = [_hash_ngrams(distinct[i : i + HASH_CHUNK]) for i in range(0, len(distinct), HASH_CHUNK)]
        matrices.append(sp.vstack(chunks, format="csr") if len(chunks) > 1 else _hash_ngrams(distinct))
    return EncodedTexts(codes=tuple(codes), matrices=tuple(matrices))


def _distinct(column: pl.Series) -> tuple[IntArray, pl.Series]:
    """(code per row, distinct texts), grouped by a 64-bit hash and checked exactly against the texts."""
    hashes = column.hash(seed=0).to_numpy()
    _, first, codes = np.unique(hashes, return_index=True, return_inverse=True)
    distinct = column.gather(first)
    if not (distinct.gather(codes) == column).all():  # a hash collision: never seen, but then be exact
        distinct = column.unique(maintain_order=True)  # 5x slower on text that never repeats
        codes = column.cast(pl.Enum(distinct)).to_physical().to_numpy()
    return codes.astype(np.int64), distinct


def _hash_ngrams(texts: pl.Series) -> sp.csr_matrix:
    """Counts of hashed lowercase word unigrams and bigrams, one l2-normalised row per text.

    Polars' string hash is only stable within a polars version, which is enough: the model that reads these
    columns is fit in the same call.
    """
    tokens = texts.str.to_lowercase().str.extract_all(TOKEN_PATTERN)
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    unigram = tokens.list.explode().drop_nulls().hash(seed=0).to_numpy()  # all tokens, text after text
    ends_text = np.zeros(len(unigram), dtype=bool)
    ends_text[(np.cumsum(lengths) - 1)[lengths > 0]] = True
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        bigram = unigram * np.uint64(0x9E3779B97F4A7C15) ^ np.roll(unigram, -1)  # token p with token p + 1
        bigram ^= bigram >> np.uint64(31)
    # per text: u0 b01 u1 b12 ... u_last, so each row's entries are contiguous without a sort
    slots = np.empty(2 * len(unigram), dtype=np.uint64)
    slots[0::2], slots[1::2] = unigram, bigram
    keep = np.ones(len(slots), dtype=bool)
    keep[1::2] = ~ends_text  # no bigram across two texts
    indices = (slots[keep] % np.uint64(HASH_FEATURES)).astype(np.int32)
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.maximum(2 * lengths - 1, 0), out=indptr[1:])
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(texts), HASH_FEATURES)
    )
    matrix.sum_duplicates()  # a repeated n-gram counts, as in a bag of words
    return normalize(matrix, norm="l2", copy=False) if len(texts) else matrix


def encode_features(features: NDArray[Any] | pl.DataFrame | None, n_rows: int) -> EncodedFeatures:
    """Per feature, up to FEATURE_BINS quantile bins plus a bin for missing (NaN, None, null)."""
    if features is None:
        return EncodedFeatures(columns=np.zeros((n_rows, 0), dtype=np.int32), width=0)
    matrix = _feature_matrix(features, n_rows)
    quantiles = np.linspace(0.0, 1.0, FEATURE_BINS + 1)[1:-1]
    columns = np.empty(matrix.shape, dtype=np.int32)
    offset = 0
    for j in range(matrix.shape[1]):
        values = matrix[:, j]
        missing = np.isnan(values)
        present = values[~missing]
        # inverted_cdf picks observed values, so infinities and constant columns give sane (fewer) edges
        edges = np.unique(np.quantile(present, quantiles, method="inverted_cdf")) if present.size else np.empty(0)
        bins = np.searchsorted(edges, values, side="right")  # 0..len(edges)
        bins[missing] = len(edges) + 1
        columns[:, j] = offset + bins
        offset += len(edges) + 2
    return EncodedFeatures(columns=columns, width=offset)


# ---------------------------------------------------------------------------------------------------------------
# Out-of-fold probabilities


def out_of_fold_probs(
    texts: TextInput | EncodedTexts,
    features: NDArray[Any] | pl.DataFrame | None,
    labels: NDArray[np.integer[Any]],
    *,
    cardinality: int,
    folds: int = 5,
    seed: int = 0,
    max_train_rows: int | None = 250_000,
) -> FloatArray:
    """Out-of-fold class probabilities, shape (n, cardinality), rows summing to 1.

    `texts`: see `encode_texts` (or its result, to reuse the encoding). `features`: (n, m) numbers, NaN or
    None for missing, or a polars DataFrame of numeric/boolean columns, or None. `labels`: class in
    0..cardinality-1, or -1 for no label. Labeled rows are split into `folds` stratified folds; each row's
    probabilities come from the model fit without its fold, on about `max_train_rows` of the other folds'
    rows (None: all of them). Rows labeled -1 train nothing and get the mean of the fold models'
    probabilities. Deterministic given `seed`.
    """
    _check_cardinality(cardinality)
    encoded = texts if isinstance(texts, EncodedTexts) else encode_texts(texts)
    n = encoded.n_rows
    y = _check_labels(labels, n, cardinality)
    _check_int("folds", folds, 2)
    if max_train_rows is not None:
        _check_int("max_train_rows", max_train_rows, 2)
    labeled = np.flatnonzero(y != ABSTAIN)
    if len(labeled) < folds or len(np.unique(y[labeled])) < 2:
        raise ValueError(
            f"expected at least {folds} labeled rows (one per fold) covering at least 2 classes, got "
            f"{len(labeled)} labeled rows with classes {np.unique(y[labeled]).tolist()}"
        )
    bins = encode_features(features, n)

    rng = np.random.default_rng(seed)
    fold_of = _stratified_folds(y, labeled, folds, rng)
    # One sample, one design matrix for all folds: fold f trains on the sample minus fold f, which is then
    # about max_train_rows rows; no row ever trains the model that predicts it.
    cap = None if max_train_rows is None else math.ceil(max_train_rows * folds / (folds - 1))
    sample = _stratified_sample(labeled, y, cap, rng)
    design = _design(encoded, bins, sample)
    unlabeled = np.flatnonzero(y == ABSTAIN)
    probs = np.zeros((n, cardinality))
    for f in range(folds):
        train = fold_of[sample] != f
        model = _fit(design[train], y[sample][train], seed=seed + f)
        held_out = labeled[fold_of[labeled] == f]
        probs[held_out] = _predict(model, encoded, bins, held_out, cardinality)
        if len(unlabeled):
            probs[unlabeled] += _predict(model, encoded, bins, unlabeled, cardinality) / folds
    return probs


def _stratified_folds(y: IntArray, labeled: IntArray, folds: int, rng: np.random.Generator) -> IntArray:
    """Fold per row (-1 for unlabeled): each class dealt round-robin in random order, so every fold has its share."""
    fold_of = np.full(len(y), -1, dtype=np.int64)
    start = 0
    for c in np.unique(y[labeled]):
        members = labeled[y[labeled] == c]
        fold_of[rng.permutation(members)] = (start + np.arange(len(members))) % folds
        start += len(members)  # the next class continues the deal, so small classes do not all start at fold 0
    return fold_of


def _stratified_sample(rows: IntArray, y: IntArray, cap: int | None, rng: np.random.Generator) -> IntArray:
    if cap is None or len(rows) <= cap:
        return rows
    keep = []
    for c in np.unique(y[rows]):
        members = rows[y[rows] == c]
        take = math.ceil(len(members) * cap / len(rows))  # ceil: a rare class keeps at least one row
        keep.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def _design(encoded: EncodedTexts, bins: EncodedFeatures, rows: IntArray) -> sp.csr_matrix:
    """The row-level matrix for `rows` only (a training sample): text blocks, then one-hot feature bins."""
    blocks = [matrix[codes[rows]] for codes, matrix in zip(encoded.codes, encoded.matrices, strict=True)]
    m = bins.columns.shape[1]
    if m:
        one_hot = sp.csr_matrix(
            (np.ones(len(rows) * m, dtype=np.float32), bins.columns[rows].ravel(), np.arange(len(rows) + 1) * m),
            shape=(len(rows), bins.width),
        )
        blocks.append(one_hot)
    return sp.hstack(blocks, format="csr")


def _fit(design: sp.csr_matrix, y: IntArray, *, seed: int) -> SGDClassifier | int:
    """An SGD logistic model; or the class itself when the training rows hold a single class."""
    if len(np.unique(y)) == 1:
        return int(y[0])
    # SGD needs a number of updates, not of passes: two passes over 250k rows came within 0.5% of
    # LogisticRegression's log loss on the bench data (0.432 vs 0.430) at 1/45 of the time; small folds get more.
    epochs = min(MAX_EPOCHS, max(2, math.ceil(SGD_UPDATES / len(y))))
    # alpha 1e-4 beat 1e-5 and 1e-3 (1e-6 overfit: flagged twice as many items at half the precision);
    # averaging smooths the last noisy steps; tol=None runs exactly `epochs` passes (fixed cost, no warning)
    model = SGDClassifier(loss="log_loss", alpha=1e-4, average=True, max_iter=epochs, tol=None, random_state=seed)
    model.fit(design, y)
    return model


def _predict(
    model: SGDClassifier | int, encoded: EncodedTexts, bins: EncodedFeatures, rows: IntArray, k: int
) -> FloatArray:
    """predict_proba without a row-level matrix: score each distinct text once, then gather per row."""
    out = np.zeros((len(rows), k))
    if isinstance(model, int):
        out[:, model] = 1.0
        return out
    coef = np.asarray(model.coef_, dtype=np.float64)  # (1 or n_classes, width)
    scores = np.tile(np.asarray(model.intercept_, dtype=np.float64), (len(rows), 1))
    start = 0
    for codes, matrix in zip(encoded.codes, encoded.matrices, strict=True):
        per_text = matrix @ coef[:, start : start + HASH_FEATURES].T  # (distinct texts, n_classes)
        scores += per_text[codes[rows]]
        start += HASH_FEATURES
    if bins.width:
        scores += coef[:, start:].T[bins.columns[rows]].sum(axis=1)
    # the same link as SGDClassifier.predict_proba for log loss: sigmoid; one-vs-rest sigmoids renormalised
    positive = expit(scores)
    classes = np.asarray(model.classes_, dtype=np.int64)
    if len(classes) == 2:
        out[:, classes[1]] = positive[:, 0]
        out[:, classes[0]] = 1.0 - positive[:, 0]
    else:
        out[:, classes] = positive / positive.sum(axis=1, keepdims=True)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Label issues


def find_issues(labels: NDArray[np.integer[Any]], pred_probs: NDArray[np.floating[Any]]) -> pl.DataFrame:
    """One row per item: is_issue (cleanlab's confident-learning filter), label_quality (self-confidence,
    in [0, 1], low = likely wrong), suggested_label (argmax of pred_probs).

    `labels` is (n,) with classes 0..k-1 or -1 (no label); `pred_probs` is (n, k) out-of-fold probabilities.
    A row labeled -1 is never an issue and its label_quality is null. Confident learning estimates how often one
    given class stands for another, so with fewer than two given classes nothing is flagged (quality still is).
    """
    probs = _check_probs(pred_probs)
    n, k = probs.shape
    y = _check_labels(labels, n, k)
    labeled = np.flatnonzero(y != ABSTAIN)
    is_issue = np.zeros(n, dtype=bool)
    quality = np.full(n, np.nan)
    if len(np.unique(y[labeled])) >= 2:
        # n_jobs=1: cleanlab would otherwise fork a process pool, which is unsafe in a threaded service and
        # buys nothing here (under a second per million rows)
        is_issue[labeled] = find_label_issues(y[labeled], probs[labeled], n_jobs=1)
    if len(labeled):
        quality[labeled] = get_label_quality_scores(y[labeled], probs[labeled])
    return pl.DataFrame(
        {
            "is_issue": is_issue,
            "label_quality": pl.Series(quality, dtype=pl.Float64, nan_to_null=True),
            "suggested_label": probs.argmax(axis=1).astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Several annotators per item


def consensus(
    annotations: NDArray[np.floating[Any]], pred_probs: NDArray[np.floating[Any]] | None = None
) -> pl.DataFrame:
    """Consensus label per item from several annotators, scored by cleanlab's CROWDLAB.

    `annotations` is (n_items, n_annotators): a class 0..k-1, or NaN where that annotator did not label the
    item. `pred_probs` is (n_items, k) from a model (e.g. `out_of_fold_probs`). Without it, each item's
    annotation counts smoothed toward the overall class frequencies stand in for a model, so the quality then
    reflects agreement, weighted by how reliable each annotator proves to be on the items they share.

    Returns one row per item: consensus_label, consensus_quality_score (in [0, 1], low = doubtful),
    annotator_agreement (fraction of the item's annotators who chose the consensus), num_annotations. An item
    with one annotator gets that label, agreement 1.0, and a quality that leans on the model (or on the
    smoothing); an item nobody annotated gets nulls. A vote still tied after cleanlab's tie-breaks (model, class
    frequency, annotator quality) is broken at random by cleanlab.
    """
    matrix, probs = _check_annotations(annotations, pred_probs)
    present = ~np.isnan(matrix)
    num_annotations = present.sum(axis=1)
    k = probs.shape[1] if probs is not None else max(2, int(np.nanmax(matrix)) + 1 if present.any() else 2)
    counts = np.stack([(matrix == c).sum(axis=1) for c in range(k)], axis=1).astype(np.float64)
    if probs is None:
        prior = (counts.sum(axis=0) + 1.0) / (counts.sum() + k)
        probs = (counts + CONSENSUS_SMOOTHING * k * prior) / (num_annotations[:, None] + CONSENSUS_SMOOTHING * k)

    n = matrix.shape[0]
    label, quality, agreement = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    items = np.flatnonzero(num_annotations > 0)  # cleanlab rejects items and annotators without any label
    sub = matrix[items][:, present[items].any(axis=0)]
    if sub.shape[1] >= 2 and (num_annotations[items] >= 2).any():
        result = get_label_quality_multiannotator(
            sub, probs[items], verbose=False, return_detailed_quality=False, return_annotator_stats=False
        )["label_quality"]
        label[items] = result["consensus_label"].to_numpy()
        quality[items] = result["consensus_quality_score"].to_numpy()
        agreement[items] = result["annotator_agreement"].to_numpy()
    elif len(items):
        # cleanlab's multi-annotator scoring needs at least one item with two labels; with none, every item has
        # one label, and its quality is cleanlab's single-label score against the model
        single = counts[items].argmax(axis=1)
        label[items] = single
        quality[items] = get_label_quality_scores(single, probs[items])
        agreement[items] = 1.0
    return pl.DataFrame(
        {
            "consensus_label": pl.Series(label, nan_to_null=True).cast(pl.Int64),
            "consensus_quality_score": pl.Series(quality, nan_to_null=True),
            "annotator_agreement": pl.Series(agreement, nan_to_null=True),
            "num_annotations": num_annotations.astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation: public functions check once and say what was expected and what arrived


def _text_frame(texts: TextInput) -> pl.DataFrame:
    if isinstance(texts, pl.DataFrame):
        frame = texts
    elif isinstance(texts, pl.Series):
        frame = texts.to_frame("text")
    elif isinstance(texts, Sequence) and not isinstance(texts, str):
        try:
            frame = pl.Series("text", list(texts), dtype=pl.String).to_frame()
        except (TypeError, pl.exceptions.PolarsError) as err:
            raise ValueError(f"expected one or more string columns of texts, got {err}".splitlines()[0]) from err
    else:
        raise ValueError(
            f"expected texts as a sequence of strings, a polars Series or DataFrame, got {type(texts).__name__}"
        )
    wrong = {name: str(dtype) for name, dtype in frame.schema.items() if dtype != pl.String}
    if frame.width == 0 or wrong:
        raise ValueError(f"expected one or more string columns of texts, got columns {dict(frame.schema)}")
    return frame


def _feature_matrix(features: NDArray[Any] | pl.DataFrame, n_rows: int) -> FloatArray:
    if isinstance(features, pl.DataFrame):
        try:
            return _feature_matrix(features.cast(pl.Float64).to_numpy(), n_rows)  # null becomes NaN
        except pl.exceptions.PolarsError as err:
            raise ValueError(f"expected numeric or boolean feature columns, got {dict(features.schema)}") from err
    try:
        matrix = np.asarray(features, dtype=np.float64)  # None becomes NaN
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected features as numbers (NaN/None for missing), got {_describe(features)}") from err
    if matrix.ndim != 2 or matrix.shape[0] != n_rows:
        raise ValueError(f"expected features of shape ({n_rows}, m) to match the {n_rows} texts, got {matrix.shape}")
    return matrix


def _check_annotations(annotations: object, pred_probs: object | None) -> tuple[FloatArray, FloatArray | None]:
    matrix = np.asarray(annotations, dtype=np.float64) if _is_numeric(annotations) else None
    if matrix is None or matrix.ndim != 2:
        raise ValueError(
            "expected annotations as a 2-D numeric array (items x annotators, NaN = not annotated), "
            f"got {_describe(annotations)}"
        )
    values = matrix[~np.isnan(matrix)]
    if values.size and (values.min() < 0 or np.any(values != np.round(values))):
        raise ValueError(f"expected annotations to be class indices >= 0 or NaN, got {_describe(annotations)}")
    if pred_probs is None:
        return matrix, None
    probs = _check_probs(pred_probs)
    needed = int(values.max()) + 1 if values.size else 2
    if probs.shape[0] != matrix.shape[0] or probs.shape[1] < needed:
        raise ValueError(
            f"expected pred_probs of shape ({matrix.shape[0]}, k >= {needed}) for {matrix.shape[0]} items annotated "
            f"with classes up to {needed - 1}, got {probs.shape}"
        )
    return matrix, probs


def _check_labels(labels: object, n: int, k: int) -> IntArray:
    arr = np.asarray(labels)
    ok = arr.ndim == 1 and len(arr) == n and (np.issubdtype(arr.dtype, np.integer) or arr.size == 0)
    if not ok or (arr.size and (arr.min() < ABSTAIN or arr.max() > k - 1)):
        raise ValueError(
            f"expected labels as a 1-D integer array of {n} classes in [-1, {k - 1}] (-1 = no label), "
            f"got {_describe(arr)}"
        )
    return arr.astype(np.int64, copy=False)


def _check_probs(pred_probs: object) -> FloatArray:
    arr = np.asarray(pred_probs) if _is_numeric(pred_probs) else None
    if arr is None or arr.ndim != 2 or arr.shape[1] < 2 or not np.isfinite(arr).all():
        raise ValueError(f"expected pred_probs as a finite 2-D float array (n, k >= 2), got {_describe(pred_probs)}")
    if arr.size and (arr.min() < 0 or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3)):
        raise ValueError(f"expected pred_probs rows to be probabilities summing to 1, got {_describe(arr)}")
    return arr.astype(np.float64, copy=False)


def _check_cardinality(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"expected cardinality to be an integer >= 2, got {k!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"expected {name} to be an integer >= {minimum}, got {value!r}")


def _is_numeric(value: object) -> bool:
    try:
        return np.issubdtype(np.asarray(value).dtype, np.number) or np.asarray(value).dtype == np.bool_
    except (TypeError, ValueError):
        return False


def _describe(value: object) -> str:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return type(value).__name__
    text = f"{type(value).__name__} of shape {arr.shape}, dtype {arr.dtype}"
    if arr.size and np.issubdtype(arr.dtype, np.number):
        text += f", values in [{np.nanmin(arr)}, {np.nanmax(arr)}]"
    return text
