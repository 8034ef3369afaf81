"""Behaviour fingerprints of a model over event-time windows: pure frames in, frames out.

Per interaction: output length, whether the output parses as JSON, is wrapped in markdown code
fences, refuses or apologises, its language, the latency; and, where the labels are joined,
the implicit signals (copy, accept, edit, retry, abandon) and the weak label. Per series (a model
id, version and provider serving one app and task) and window: each measure's count, mean and
variance, with a 95% interval (Wilson for shares, normal for means). Lengths and latencies are
measured on a log scale, where a change by a factor is a shift and outliers weigh little.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

SERIES_KEYS = ("model_id", "model_version", "provider", "app", "task")
Z95 = 1.959963984540054

_FENCE = re.compile(r"```")
_REFUSAL = re.compile(
    r"\b(i can(?:'|no)t help|i(?:'m| am) (?:not able|unable) to|i won't be able to|as an ai(?: language model)?"
    r"|i (?:cannot|can't) (?:assist|provide|do that))",
    re.IGNORECASE,
)
_APOLOGY = re.compile(r"\b(i(?:'m| am) sorry|i apologi[sz]e|my apologies|sorry,)", re.IGNORECASE)
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(("the", "and", "is", "to", "of", "you", "your", "it", "for", "on", "in", "this", "that",
                     "with", "are", "be")),
    "de": frozenset(("der", "die", "das", "und", "ist", "nicht", "sie", "zu", "mit", "ein", "eine", "ich",
                     "den", "auf")),
    "fr": frozenset(("le", "la", "les", "et", "est", "vous", "pas", "une", "des", "du", "pour", "que", "dans",
                     "sur")),
    "es": frozenset(("el", "la", "los", "las", "y", "es", "que", "de", "en", "una", "por", "para", "con", "no",
                     "su")),
}
_WORD = re.compile(r"[a-zà-ÿ]+")


@dataclass(frozen=True)
class Measure:
    name: str
    column: str
    kind: str  # "share" (a 0/1 column) or "mean" (a real column)
    what: str


MEASURES: tuple[Measure, ...] = (
    Measure("output_log_chars", "log_chars", "mean", "output length (log chars)"),
    Measure("json_share", "is_json", "share", "outputs that parse as JSON"),
    Measure("fence_share", "fenced", "share", "outputs with markdown code fences"),
    Measure("refusal_share", "refusal", "share", "outputs refusing"),
    Measure("apology_share", "apology", "share", "outputs apologising"),
    Measure("main_language_share", "main_language", "share", "outputs in the series' main language"),
    Measure("latency_log_ms", "log_latency", "mean", "latency (log ms)"),
    Measure("copy_rate", "copy", "share", "outputs copied"),
    Measure("accept_rate", "accept", "share", "outputs accepted"),
    Measure("edit_rate", "edit", "share", "outputs edited"),
    Measure("retry_rate", "retry", "share", "outputs regenerated"),
    Measure("abandon_rate", "abandon", "share", "outputs abandoned"),
    Measure("good_share", "good", "share", "weak label good (labeled outputs)"),
)
MEASURE_BY_NAME = {m.name: m for m in MEASURES}


def parses_as_json(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def language(text: str) -> str:
    """The language whose common words the text uses most ("und" when none is used)."""
    words = _WORD.findall(text.lower())
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] > 0 else "und"


def _language_expr(text: pl.Expr) -> pl.Expr:
    """`language` as one expression: count each language's common words, take the most used."""
    lowered = text.str.to_lowercase()
    counts = [lowered.str.count_matches(r"\b(?:" + "|".join(sorted(stop)) + r")\b").alias(lang)
              for lang, stop in _STOPWORDS.items()]
    best = pl.max_horizontal(counts)
    picks = [pl.when(count == best).then(pl.lit(lang)) for lang, count in zip(_STOPWORDS, counts, strict=True)]
    return pl.when(best == 0).then(pl.lit("und")).otherwise(pl.coalesce(picks))


def interaction_features(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per interaction with the 0/1 and log-scale columns the measures read.

    Needs ts, the series keys and output; latency_ms and the labels' signal columns (copied, accepted,
    n_edits, n_retries, abandoned_explicit, abandoned_inferred, label) are used when present.
    """
    missing = [c for c in ("ts", *SERIES_KEYS, "output") if c not in frame.columns]
    if missing:
        raise ValueError(f"expected interactions with {missing}")
    out = pl.col("output").fill_null("")
    cols: list[pl.Expr] = [
        (out.str.len_chars().cast(pl.Float64) + 1.0).log().alias("log_chars"),
        pl.lit(pl.Series([float(parses_as_json(t or "")) for t in frame["output"].to_list()])).alias("is_json"),
        out.str.contains(_FENCE.pattern).cast(pl.Float64).alias("fenced"),
        out.str.contains("(?i)" + _REFUSAL.pattern).cast(pl.Float64).alias("refusal"),
        out.str.contains("(?i)" + _APOLOGY.pattern).cast(pl.Float64).alias("apology"),
        _language_expr(out).alias("language"),
    ]
    present = set(frame.columns)
    if "latency_ms" in present:
        cols.append((pl.col("latency_ms").cast(pl.Float64) + 1.0).log().alias("log_latency"))
    signals = {
        "copy": ("copied", pl.col("copied").cast(pl.Float64)),
        "accept": ("accepted", pl.col("accepted").cast(pl.Float64)),
        "edit": ("n_edits", (pl.col("n_edits") > 0).cast(pl.Float64)),
        "retry": ("n_retries", (pl.col("n_retries") > 0).cast(pl.Float64)),
        # only labeled outputs count towards the good share
        "good": ("label", pl.when(pl.col("label").is_in([0, 1])).then(pl.col("label").cast(pl.Float64))),
    }
    for name, (needed, expr) in signals.items():
        if needed in present:
            cols.append(expr.alias(name))
    if "abandoned_explicit" in present:
        inferred = pl.col("abandoned_inferred").fill_null(False) if "abandoned_inferred" in present else False
        cols.append((pl.col("abandoned_explicit").fill_null(False) | inferred).cast(pl.Float64).alias("abandon"))
    featured = frame.with_columns(cols)
    main = featured.group_by(SERIES_KEYS).agg(pl.col("language").mode().sort().first().alias("_main"))
    return (
        featured.join(main, on=list(SERIES_KEYS), how="left", nulls_equal=True)
        .with_columns((pl.col("language") == pl.col("_main")).cast(pl.Float64).alias("main_language"))
        .drop("_main")
    )


def windowed(features: pl.DataFrame, every: timedelta, keys: tuple[str, ...] = SERIES_KEYS) -> pl.DataFrame:
    """Per series, window (start) and measure: n, mean, variance and a 95% interval, in time order."""
    window = pl.col("ts").dt.truncate(every).alias("window_start")
    parts = []
    for m in MEASURES:
        if m.column not in features.columns:
            continue
        value = pl.col(m.column)
        parts.append(
            features.filter(value.is_not_null())
            .group_by(*keys, window)
            .agg(pl.len().alias("n"), value.mean().alias("mean"), value.var(ddof=0).alias("var"))
            .with_columns(pl.lit(m.name).alias("measure"), pl.lit(m.kind).alias("kind"))
        )
    if not parts:
        raise ValueError("no measure can be computed from these columns")
    frame = pl.concat(parts, how="vertical_relaxed")
    low, high = _interval(frame["kind"].to_list(), frame["n"].to_list(), frame["mean"].to_list(),
                          frame["var"].to_list())
    return frame.with_columns(pl.Series("ci_low", low), pl.Series("ci_high", high)).sort(
        *keys, "measure", "window_start", nulls_last=True
    )


def summarise(features: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """Each measure over all of a group's interactions (no windows): n, mean, variance, 95% interval."""
    parts = []
    for m in MEASURES:
        if m.column not in features.columns:
            continue
        value = pl.col(m.column)
        parts.append(
            features.filter(value.is_not_null())
            .group_by(*keys)
            .agg(pl.len().alias("n"), value.mean().alias("mean"), value.var(ddof=0).alias("var"))
            .with_columns(pl.lit(m.name).alias("measure"), pl.lit(m.kind).alias("kind"))
        )
    frame = pl.concat(parts, how="vertical_relaxed")
    low, high = _interval(frame["kind"].to_list(), frame["n"].to_list(), frame["mean"].to_list(),
                          frame["var"].to_list())
    return frame.with_columns(pl.Series("ci_low", low), pl.Series("ci_high", high))


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _interval(kinds: list[str], ns: list[int], means: list[float], variances: list[float | None]
              ) -> tuple[list[float], list[float]]:
    low, high = [], []
    for kind, n, mean, var in zip(kinds, ns, means, variances, strict=True):
        if kind == "share":
            lo, hi = wilson(mean, n)
        else:
            half = Z95 * math.sqrt((var or 0.0) / max(n, 1))
            lo, hi = mean - half, mean + half
        low.append(lo)
        high.append(hi)
    return low, high
