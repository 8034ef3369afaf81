"""How far an eval slice has drifted from recent traffic, and how old it is.

Each dimension (topic cluster, task, segment, model version) is a categorical mix; the distance between
the slice's mix and traffic's is the Jensen-Shannon divergence in bits (0 = the same mix, 1 = no value in
common). It is symmetric, bounded and finite when one side has a value the other lacks, which is exactly
the drift to catch (a new topic, a new model version). The slice's divergence is its worst dimension.

A cluster is uncovered when it holds a real share of traffic but the slice holds much less of it (under
`coverage_ratio` times its traffic share): those are the gaps a renewal fills and sends to annotators.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import numpy as np
import polars as pl

CLUSTER: Final = "topic_cluster"
DIMENSIONS: Final = (CLUSTER, "task", "segment", "model_version")


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two mixes given as counts or shares."""
    keys = sorted(set(p) | set(q))
    a = np.array([float(p.get(k, 0.0)) for k in keys])
    b = np.array([float(q.get(k, 0.0)) for k in keys])
    if (a < 0).any() or (b < 0).any() or not np.isfinite(a).all() or not np.isfinite(b).all():
        raise ValueError("expected counts or shares >= 0 (finite) on both sides")
    if a.sum() == 0 or b.sum() == 0:
        raise ValueError(f"expected two non-empty mixes, got totals {a.sum()} and {b.sum()}")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2
    value = 0.5 * _kl(a, m) + 0.5 * _kl(b, m)
    return float(min(1.0, max(0.0, value)))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    present = p > 0
    return float(np.sum(p[present] * np.log2(p[present] / q[present])))


def mix(frame: pl.DataFrame, column: str) -> dict[str, float]:
    """Share of each value of `column` (nulls count as the value "null")."""
    if column not in frame.columns:
        raise ValueError(f"expected a column {column!r}, got {frame.columns}")
    if frame.is_empty():
        return {}
    counts = frame.group_by(pl.col(column).cast(pl.String).fill_null("null").alias("v")).agg(pl.len())
    total = frame.height
    return {str(v): n / total for v, n in counts.iter_rows()}


@dataclass(frozen=True)
class ClusterGap:
    """A cluster of traffic the slice under-covers."""

    cluster: int
    name: str
    traffic_share: float
    slice_share: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "traffic_share": round(self.traffic_share, 6),
            "slice_share": round(self.slice_share, 6),
        }


@dataclass(frozen=True)
class DriftReport:
    divergence: float  # the worst dimension's
    by_dimension: dict[str, float]
    uncovered: tuple[ClusterGap, ...]
    threshold: float
    age: timedelta | None = None
    max_age: timedelta | None = None
    slice_rows: int = 0
    traffic_rows: int = 0
    mixes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.divergence > self.threshold

    @property
    def too_old(self) -> bool:
        return self.age is not None and self.max_age is not None and self.age > self.max_age

    @property
    def stale(self) -> bool:
        """Past a threshold: time to propose the next version."""
        return self.drifted or self.too_old

    def to_dict(self) -> dict[str, Any]:
        return {
            "divergence": round(self.divergence, 6),
            "by_dimension": {k: round(v, 6) for k, v in self.by_dimension.items()},
            "threshold": self.threshold,
            "drifted": self.drifted,
            "uncovered": [g.to_dict() for g in self.uncovered],
            "age_s": None if self.age is None else self.age.total_seconds(),
            "max_age_s": None if self.max_age is None else self.max_age.total_seconds(),
            "too_old": self.too_old,
            "stale": self.stale,
            "slice_rows": self.slice_rows,
            "traffic_rows": self.traffic_rows,
        }


def measure_drift(
    slice_items: pl.DataFrame,
    traffic: pl.DataFrame,
    *,
    threshold: float,
    dimensions: Sequence[str] = DIMENSIONS,
    cluster_names: Sequence[str] = (),
    age: timedelta | None = None,
    max_age: timedelta | None = None,
    min_cluster_share: float = 0.01,
    coverage_ratio: float = 0.25,
) -> DriftReport:
    """Compare the slice's mixes with traffic's, one row per item / interaction, both clustered alike."""
    if not 0 <= threshold <= 1 or math.isnan(threshold):
        raise ValueError(f"expected threshold in [0, 1], got {threshold!r}")
    if not 0 < min_cluster_share < 1 or not 0 < coverage_ratio <= 1:
        raise ValueError(
            f"expected min_cluster_share in (0, 1) and coverage_ratio in (0, 1], got {min_cluster_share!r}, "
            f"{coverage_ratio!r}"
        )
    if not dimensions:
        raise ValueError("expected at least one dimension to compare")
    for name, frame in (("slice", slice_items), ("traffic", traffic)):
        missing = [d for d in dimensions if d not in frame.columns]
        if missing:
            raise ValueError(f"expected the {name} frame to have columns {list(dimensions)}; missing {missing}")
    if traffic.is_empty():
        raise ValueError("expected recent traffic to compare with, got no rows")
    if slice_items.is_empty():
        # an empty slice covers nothing: as far from traffic as it gets
        by_dimension = dict.fromkeys(dimensions, 1.0)
        mixes: dict[str, dict[str, dict[str, float]]] = {
            d: {"slice": {}, "traffic": mix(traffic, d)} for d in dimensions
        }
    else:
        mixes = {d: {"slice": mix(slice_items, d), "traffic": mix(traffic, d)} for d in dimensions}
        by_dimension = {d: js_divergence(m["slice"], m["traffic"]) for d, m in mixes.items()}
    uncovered: tuple[ClusterGap, ...] = ()
    if CLUSTER in mixes:
        uncovered = _uncovered(mixes[CLUSTER], cluster_names, min_cluster_share, coverage_ratio)
    return DriftReport(
        divergence=max(by_dimension.values()),
        by_dimension=by_dimension,
        uncovered=uncovered,
        threshold=threshold,
        age=age,
        max_age=max_age,
        slice_rows=slice_items.height,
        traffic_rows=traffic.height,
        mixes=mixes,
    )


def _uncovered(
    shares: dict[str, dict[str, float]], names: Sequence[str], min_share: float, ratio: float
) -> tuple[ClusterGap, ...]:
    gaps = []
    for key, traffic_share in shares["traffic"].items():
        slice_share = shares["slice"].get(key, 0.0)
        if traffic_share >= min_share and slice_share < ratio * traffic_share:
            cluster = int(key) if key.lstrip("-").isdigit() else -1
            name = names[cluster] if 0 <= cluster < len(names) else key
            gaps.append(ClusterGap(cluster, name, traffic_share, slice_share))
    return tuple(sorted(gaps, key=lambda g: (-g.traffic_share, g.cluster)))
