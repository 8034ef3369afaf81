"""Stratified eval-slice sampling and the keep / retire / fill proposal of a renewal.

A slice should look like production: each stratum (a combination of task, segment, model version, topic
cluster) gets a share of the slice proportional to its share of recent traffic (largest remainder, with a
small floor so rare strata are not dropped). Within a stratum, human gold comes first, then weak labels
at or above a confidence threshold (kept, and marked weak); items below it never enter a slice without a
human label, so strata short of confident labels are reported as shortfall for annotators to close.
Ties are broken by a uniform draw fixed by (seed, interaction_id) alone (a hash defined here, not a
library's), so a build is reproducible and the sample within a stratum is uniform.

Renewal keeps what still represents traffic (in a stratum that still has a target, young enough, its
label still eligible, gold preferred), retires the rest with a reason, and fills each stratum up to its
target from recent traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

# a label's source: annotators, the label model, or none (no labeling function voted, no annotator answered)
HUMAN: Final = "human"
WEAK: Final = "weak"
NONE: Final = "none"
STRATA: Final = ("task", "segment", "model_version", "topic_cluster")
STRATUM: Final = "stratum"
_DRAW: Final = "_draw"
_WEAK_RANK: Final = "_weak"

RETIRE_MISSING: Final = "no longer in the labels table"
RETIRE_OLD: Final = "older than the slice's max age"
RETIRE_LABEL: Final = "label no longer human or confident"
RETIRE_GONE: Final = "stratum gone from recent traffic"
RETIRE_OVER: Final = "stratum over-represented"


def stratum_expr(strata: Sequence[str]) -> pl.Expr:
    """One string naming an item's stratum, e.g. "reply-draft|free|2026-11-15|3"."""
    unknown = sorted(set(strata) - set(STRATA))
    if unknown:
        raise ValueError(f"expected strata among {list(STRATA)}, got unknown {unknown}")
    if not strata:
        return pl.lit("all").alias(STRATUM)
    parts = [pl.col(s).cast(pl.String).fill_null("null") for s in strata]
    return pl.concat_str(parts, separator="|").alias(STRATUM)


def eligible_expr(min_confidence: float) -> pl.Expr:
    """May enter a slice: human gold, or a weak label at or above `min_confidence`."""
    if not 0 < min_confidence <= 1:
        raise ValueError(f"expected min_confidence in (0, 1], got {min_confidence!r}")
    weak_ok = pl.col("covered").fill_null(False) & (pl.col("confidence") >= min_confidence)
    return ((pl.col("label_source") == HUMAN) | weak_ok).fill_null(False)


def allocate(counts: Mapping[str, int], *, size: int, min_per_stratum: int = 1) -> dict[str, int]:
    """Items per stratum: proportional to `counts` (traffic per stratum), summing to min(size, total).

    Every stratum gets min(min_per_stratum, its count) first while the size allows (the largest strata
    first when it does not); the rest is shared in proportion, by largest remainder, never above a count.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expected size as an integer >= 1, got {size!r}")
    if isinstance(min_per_stratum, bool) or not isinstance(min_per_stratum, int) or min_per_stratum < 0:
        raise ValueError(f"expected min_per_stratum as an integer >= 0, got {min_per_stratum!r}")
    bad = {k: v for k, v in counts.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
    if bad:
        raise ValueError(f"expected counts as integers >= 0, got {bad}")
    keys = sorted((k for k, v in counts.items() if v > 0), key=lambda k: (-counts[k], k))
    c = np.array([counts[k] for k in keys], dtype=np.int64)
    total = int(c.sum())
    if total <= size:
        return dict(zip(keys, (int(v) for v in c), strict=True))
    base = np.minimum(c, min_per_stratum)
    if base.sum() >= size:
        out = np.zeros_like(c)
        left = size
        for i in range(len(keys)):  # the largest strata first
            out[i] = min(base[i], left)
            left -= int(out[i])
        return {k: int(v) for k, v in zip(keys, out, strict=True) if v > 0}
    rest = size - int(base.sum())
    extra = np.minimum(np.maximum(size * c / total - base, 0.0), c - base)
    quota = rest * extra / extra.sum()
    share = np.floor(quota).astype(np.int64)
    # largest remainders get the leftover units (ties: the larger stratum, then the key)
    order = np.lexsort((np.arange(len(keys)), -(quota - share)))
    for i in order[: rest - int(share.sum())]:
        share[i] += 1
    out = np.minimum(base + share, c)
    return {k: int(v) for k, v in zip(keys, out, strict=True) if v > 0}


def uniform_draw(ids: pl.Series, seed: int) -> NDArray[np.float64]:
    """A number in [0, 1) per id, fixed by (seed, id) alone: a polynomial hash of the UTF-8 bytes, then
    a SplitMix64 finaliser (so similar ids land far apart)."""
    arrow = ids.cast(pl.String).fill_null("").rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    buffers = arrow.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(1, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(len(starts), np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64)))
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        for j in range(int(lengths.max()) if len(lengths) else 0):
            live = lengths > j
            byte = data[np.minimum(starts + j, len(data) - 1)].astype(np.uint64)
            h = np.where(live, h * np.uint64(0x100000001B3) + byte + np.uint64(1), h)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _ranked(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Rows in preference order within each stratum (gold first, then the draw), with their rank. Callers
    pass narrow frames: a sort moves every column, and a million rows of text is slow to move."""
    strata = frame.get_column(STRATUM).unique().sort()
    # integer keys sort several times faster than strings; draws are 53-bit, so ties are left to a stable sort
    code = frame.get_column(STRATUM).replace_strict(strata, pl.int_range(strata.len(), eager=True, dtype=pl.UInt32))
    return (
        frame.with_columns(
            code.alias("_stratum_code"),
            (pl.col("label_source") != HUMAN).fill_null(True).alias(_WEAK_RANK),
            pl.Series(_DRAW, uniform_draw(frame.get_column("interaction_id"), seed)),
        )
        .sort(["_stratum_code", _WEAK_RANK, _DRAW], maintain_order=True)
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("_stratum_code").alias("_rank"))
        .drop("_stratum_code")
    )


def _targets_frame(targets: Mapping[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {STRATUM: list(targets), "_target": list(targets.values())}, schema={STRATUM: pl.String, "_target": pl.Int64}
    )


@dataclass(frozen=True)
class Proposal:
    """The next version's composition: kept and filled ids (with their stratum), retired ids with reasons."""

    keep: pl.DataFrame  # interaction_id, stratum
    fill: pl.DataFrame  # rows of `candidates` chosen to fill, in the candidates' order
    retire: pl.DataFrame  # interaction_id, stratum, reason
    targets: dict[str, int]
    shortfall: dict[str, int]  # stratum -> items missing for want of eligible labels

    @property
    def rows(self) -> int:
        return self.keep.height + self.fill.height


def propose(
    current: pl.DataFrame,
    candidates: pl.DataFrame,
    targets: Mapping[str, int],
    *,
    cutoff: datetime | None = None,
    seed: int = 0,
) -> Proposal:
    """Keep / retire / fill. `current`: the slice's items re-read from the lake (interaction_id, stratum, ts,
    label_source, present, eligible); `candidates`: eligible recent traffic (interaction_id, stratum,
    label_source, ...). With an empty `current` this is the first build: a stratified sample."""
    need_current = ("interaction_id", STRATUM, "ts", "label_source", "present", "eligible")
    need_candidates = ("interaction_id", STRATUM, "label_source")
    for name, frame, need in (("current", current, need_current), ("candidates", candidates, need_candidates)):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(f"expected {name} to have columns {list(need)}; missing {missing}")
    if not candidates.get_column("interaction_id").is_unique().all():
        raise ValueError("expected one candidate row per interaction_id")
    # an empty frame built without a schema has Null columns: give the keys their type
    keys = [pl.col("interaction_id").cast(pl.String), pl.col(STRATUM).cast(pl.String)]
    current = current.with_columns(*keys, pl.col("ts").cast(pl.Datetime("us", "UTC")),
                                   pl.col("label_source").cast(pl.String), pl.col("present").cast(pl.Boolean),
                                   pl.col("eligible").cast(pl.Boolean))
    candidates = candidates.with_columns(*keys, pl.col("label_source").cast(pl.String))
    tf = _targets_frame(targets)
    reason = (
        pl.when(~pl.col("present")).then(pl.lit(RETIRE_MISSING))
        .when(pl.lit(cutoff is not None) & (pl.col("ts") < pl.lit(cutoff))).then(pl.lit(RETIRE_OLD))
        .when(~pl.col("eligible")).then(pl.lit(RETIRE_LABEL))
        .when(pl.col("_target").is_null()).then(pl.lit(RETIRE_GONE))
        .otherwise(None)
    )
    judged = current.unique("interaction_id", keep="first").join(tf, on=STRATUM, how="left").with_columns(
        reason.alias("reason")
    )
    ranked = _ranked(judged.filter(pl.col("reason").is_null()), seed)
    keep = ranked.filter(pl.col("_rank") < pl.col("_target"))
    over = ranked.filter(pl.col("_rank") >= pl.col("_target")).with_columns(pl.lit(RETIRE_OVER).alias("reason"))
    retire = pl.concat(
        [judged.filter(pl.col("reason").is_not_null()).select("interaction_id", STRATUM, "reason"),
         over.select("interaction_id", STRATUM, "reason")]
    ).sort("interaction_id")

    kept_per = keep.group_by(STRATUM).agg(pl.len().cast(pl.Int64).alias("_kept"))
    wanted = tf.join(kept_per, on=STRATUM, how="left").with_columns(
        (pl.col("_target") - pl.col("_kept").fill_null(0)).alias("_need")
    )
    pool = candidates.select("interaction_id", STRATUM, "label_source").join(
        current.select("interaction_id"), on="interaction_id", how="anti"
    )
    pool = _ranked(pool, seed).join(wanted.select(STRATUM, "_need"), on=STRATUM, how="inner")
    chosen = pool.filter(pl.col("_rank") < pl.col("_need"))
    fill = candidates.join(chosen.select("interaction_id"), on="interaction_id", how="semi")
    got = chosen.group_by(STRATUM).agg(pl.len().cast(pl.Int64).alias("_got"))
    short = wanted.join(got, on=STRATUM, how="left").with_columns(
        (pl.col("_need") - pl.col("_got").fill_null(0)).alias("_short")
    ).filter(pl.col("_short") > 0)
    return Proposal(
        keep=keep.select("interaction_id", STRATUM).sort("interaction_id"),
        fill=fill,
        retire=retire,
        targets=dict(targets),
        shortfall=dict(zip(short.get_column(STRATUM).to_list(), short.get_column("_short").to_list(), strict=True)),
    )


def renewal_queue(
    version: pl.DataFrame,
    unlabeled: pl.DataFrame,
    *,
    shortfall: Mapping[str, int],
    uncovered_clusters: Sequence[int],
    min_gold_share: float,
    budget: int,
    reason_prefix: str,
    seed: int = 0,
) -> pl.DataFrame:
    """Annotation-outbox rows (interaction_id, queue="renewal", reason, priority) for the gaps of a version.

    Three kinds, most urgent first: recent interactions without an eligible label in strata short of items
    (a human label lets them in), weak items the version took from clusters the old version did not cover,
    and, while the version's gold share is under `min_gold_share`, its least confident weak items.
    `version` has interaction_id, stratum, topic_cluster, label_source, confidence; `unlabeled` has
    interaction_id, stratum, topic_cluster, confidence for the recent traffic not eligible for the slice.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"expected budget as an integer >= 0, got {budget!r}")
    if not 0 <= min_gold_share <= 1 or math.isnan(min_gold_share):
        raise ValueError(f"expected min_gold_share in [0, 1], got {min_gold_share!r}")
    uncovered = pl.col("topic_cluster").is_in(list(uncovered_clusters))
    doubt = (1.0 - pl.col("confidence").fill_null(0.5)).clip(0.0, 1.0)
    bonus = pl.when(uncovered).then(0.2).otherwise(0.0)
    parts: list[pl.DataFrame] = []

    short = pl.DataFrame({STRATUM: list(shortfall), "_short": list(shortfall.values())},
                         schema={STRATUM: pl.String, "_short": pl.Int64})
    if short.height and unlabeled.height:
        narrow = unlabeled.select("interaction_id", STRATUM, "topic_cluster", "confidence",
                                  pl.lit(WEAK).alias("label_source"))
        missing = _ranked(narrow, seed).join(short, on=STRATUM, how="inner").filter(pl.col("_rank") < pl.col("_short"))
        parts.append(missing.select(
            "interaction_id",
            pl.format("{}: stratum {} lacks confident labels", pl.lit(reason_prefix), STRATUM).alias("reason"),
            (0.6 + 0.2 * doubt + bonus).alias("priority"),
        ))
    weak = version.filter(pl.col("label_source") != HUMAN)
    if uncovered_clusters:
        parts.append(weak.filter(uncovered).select(
            "interaction_id",
            pl.format("{}: weak label in cluster {} the previous version did not cover", pl.lit(reason_prefix),
                      "topic_cluster").alias("reason"),
            (0.6 + 0.2 * doubt).alias("priority"),
        ))
    gold = version.height - weak.height
    deficit = math.ceil(min_gold_share * version.height - 1e-9) - gold
    if deficit > 0:
        parts.append(weak.filter(~uncovered).sort(["confidence", "interaction_id"]).head(deficit).select(
            "interaction_id",
            pl.lit(f"{reason_prefix}: gold share under {min_gold_share:g}").alias("reason"),
            (0.3 + 0.2 * doubt).alias("priority"),
        ))
    if not parts:
        return pl.DataFrame(schema={"interaction_id": pl.String, "queue": pl.String, "reason": pl.String,
                                    "priority": pl.Float64})
    rows = (
        pl.concat(parts)
        .with_columns(pl.col("priority").cast(pl.Float64).clip(0.0, 1.0))
        .sort(["priority", "interaction_id"], descending=[True, False])
        .unique("interaction_id", keep="first", maintain_order=True)
        .head(budget)
    )
    return rows.select("interaction_id", pl.lit("renewal").alias("queue"), "reason", "priority")
