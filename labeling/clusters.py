"""Topic clusters over interaction text: TF-IDF and k-means, deterministic given a seed.

Production text repeats a lot (templates, retries, the same question asked by many users), so both
fitting and prediction work on distinct texts only, weighted by how often each occurs: a million
interactions cost what their distinct prompts cost. Fitting uses at most `max_fit` distinct texts,
drawn with probability proportional to their weight (Efraimidis-Spirakis keys from a seeded
generator over the sorted texts), so the same texts and seed give the same clusters on any machine.

Cluster ids are ordered by fitted weight (0 is the largest) and each cluster is named by the top terms
of its centroid, so a report can say "the slice no longer covers 'delete account / erase'". Callers pass
masked text (labeling.pii): the names are built from the vocabulary, which must not hold personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

# Words of two letters or more; numbers (order ids, prices, dates) would split one topic into many.
TOKEN_PATTERN: Final = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"
# labeling.pii's placeholders ([EMAIL_1], [CARD_2], ...) say nothing about the topic
_PLACEHOLDER: Final = re.compile(r"\[[A-Z]+(?:_\d+)?\]")
NAME_TERMS: Final = 3


@dataclass(frozen=True)
class TopicModel:
    """A fitted clustering. `names[i]` describes cluster i; `weights[i]` is its share of the fitting weight."""

    k: int
    seed: int
    names: tuple[str, ...]
    weights: tuple[float, ...]
    fitted_texts: int
    _vectorizer: Any
    _kmeans: Any
    _order: NDArray[np.int64]  # raw k-means label -> public cluster id

    def predict(self, texts: pl.Series) -> pl.Series:
        """The cluster id (Int32) of every text, computed once per distinct text."""
        if not isinstance(texts, pl.Series):
            raise TypeError(f"expected a polars Series of text, got {type(texts).__name__}")
        texts = texts.cast(pl.String).fill_null("")
        distinct = texts.unique(maintain_order=False).sort()
        if distinct.is_empty():
            return pl.Series(texts.name, [], dtype=pl.Int32)
        raw = self._kmeans.predict(self._vectorizer.transform(distinct.to_list()))
        ids = pl.Series("cluster", self._order[raw], dtype=pl.Int32)
        # replace_strict maps every value through one hash table: no join, order kept
        return texts.replace_strict(distinct, ids, return_dtype=pl.Int32).alias(texts.name)

    def describe(self) -> dict[str, Any]:
        """What a manifest records about the clustering."""
        return {
            "k": self.k,
            "seed": self.seed,
            "fitted_texts": self.fitted_texts,
            "names": {str(i): name for i, name in enumerate(self.names)},
            "weights": {str(i): round(w, 6) for i, w in enumerate(self.weights)},
        }


def fit_topics(
    texts: pl.Series,
    *,
    weights: pl.Series | None = None,
    k: int = 24,
    seed: int = 0,
    max_fit: int = 20_000,
) -> TopicModel:
    """Fit `k` topic clusters on `texts` (one row per occurrence; `weights` per row, default 1)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not isinstance(texts, pl.Series):
        raise TypeError(f"expected a polars Series of text, got {type(texts).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"expected k as an integer >= 2, got {k!r}")
    if isinstance(max_fit, bool) or not isinstance(max_fit, int) or max_fit < k:
        raise ValueError(f"expected max_fit as an integer >= k ({k}), got {max_fit!r}")
    if weights is not None and weights.len() != texts.len():
        raise ValueError(f"expected one weight per text, got {weights.len()} weights for {texts.len()} texts")
    frame = pl.DataFrame(
        {
            "text": texts.cast(pl.String).fill_null(""),
            "w": weights.cast(pl.Float64) if weights is not None else pl.repeat(1.0, texts.len(), eager=True),
        }
    )
    if frame.get_column("w").lt(0).any() or frame.get_column("w").is_nan().any():
        raise ValueError("expected weights >= 0 (no NaN)")
    distinct = frame.group_by("text").agg(pl.col("w").sum()).filter(pl.col("w") > 0).sort("text")
    if distinct.height < 2:
        raise ValueError(f"expected at least 2 distinct texts with a positive weight to cluster, got {distinct.height}")
    distinct = _weighted_sample(distinct, max_fit, seed)
    corpus = distinct.get_column("text").to_list()
    w = distinct.get_column("w").to_numpy()

    vectorizer = TfidfVectorizer(
        token_pattern=TOKEN_PATTERN,
        preprocessor=_preprocess,
        stop_words="english",
        ngram_range=(1, 2),
        sublinear_tf=True,
        max_features=1 << 16,
        dtype=np.float32,
    )
    try:
        matrix = vectorizer.fit_transform(corpus)
    except ValueError as e:  # only stop words and numbers: nothing to cluster on
        raise ValueError(f"the texts have no words to cluster on ({e})") from e
    n = min(k, distinct.height)
    # Full k-means is exact and cheap on a few thousand distinct texts; mini-batches keep large fits fast.
    if distinct.height <= 5_000:
        kmeans: Any = KMeans(n_clusters=n, n_init=10, random_state=seed)
    else:
        kmeans = MiniBatchKMeans(n_clusters=n, n_init=3, batch_size=4096, random_state=seed)
    kmeans.fit(matrix, sample_weight=w)
    raw = np.asarray(kmeans.labels_, dtype=np.int64)
    mass = np.bincount(raw, weights=w, minlength=n)
    by_mass = np.lexsort((np.arange(n), -mass))  # heaviest first, ties by raw id
    order = np.empty(n, dtype=np.int64)
    order[by_mass] = np.arange(n)
    terms = vectorizer.get_feature_names_out()
    centers = np.asarray(kmeans.cluster_centers_)
    names = tuple(_name(centers[raw_id], terms) for raw_id in by_mass)
    total = float(mass.sum()) or 1.0
    return TopicModel(
        k=n,
        seed=seed,
        names=names,
        weights=tuple(float(mass[raw_id] / total) for raw_id in by_mass),
        fitted_texts=distinct.height,
        _vectorizer=vectorizer,
        _kmeans=kmeans,
        _order=order,
    )


def _preprocess(text: str) -> str:
    return _PLACEHOLDER.sub(" ", text).lower()


def _weighted_sample(distinct: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """At most `size` rows, each kept with probability rising with its weight (Efraimidis-Spirakis)."""
    if distinct.height <= size:
        return distinct
    u = np.random.default_rng(seed).random(distinct.height)
    keys = np.log(u) / distinct.get_column("w").to_numpy()  # log(u^(1/w)); larger is kept
    keep = np.sort(np.argsort(-keys, kind="stable")[:size])
    return distinct[keep]


def _name(center: NDArray[np.float64], terms: NDArray[Any]) -> str:
    """The centroid's heaviest terms, skipping terms already contained in a heavier one ("reset" in "reset link")."""
    chosen: list[str] = []
    for index in np.argsort(-center, kind="stable"):
        if center[index] <= 0 or len(chosen) == NAME_TERMS:
            break
        term = str(terms[index])
        if any(term in c or c in term for c in chosen):
            continue
        chosen.append(term)
    return " / ".join(chosen) if chosen else "(no words)"
