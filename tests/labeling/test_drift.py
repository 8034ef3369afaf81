"""Divergence measures: Jensen-Shannon's properties, the worst dimension, uncovered clusters, age."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest

from flywheel_feedback.labeling.drift import js_divergence, measure_drift, mix


def items(clusters: list[int], *, task: str = "t", version: str = "v1") -> pl.DataFrame:
    n = len(clusters)
    return pl.DataFrame(
        {"topic_cluster": clusters, "task": [task] * n, "segment": ["free"] * n, "model_version": [version] * n}
    )


def test_js_divergence_is_zero_for_equal_mixes_one_for_disjoint_and_symmetric() -> None:
    assert js_divergence({"a": 1, "b": 3}, {"a": 10, "b": 30}) == pytest.approx(0.0)
    assert js_divergence({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    p, q = {"a": 0.7, "b": 0.3}, {"a": 0.2, "b": 0.5, "c": 0.3}
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))
    # by hand: M = (0.45, 0.4, 0.15)
    m = (0.45, 0.4, 0.15)
    expected = 0.5 * (0.7 * math.log2(0.7 / m[0]) + 0.3 * math.log2(0.3 / m[1])) + 0.5 * (
        0.2 * math.log2(0.2 / m[0]) + 0.5 * math.log2(0.5 / m[1]) + 0.3 * math.log2(0.3 / m[2])
    )
    assert js_divergence(p, q) == pytest.approx(expected)


def test_js_divergence_refuses_empty_or_negative_mixes() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        js_divergence({}, {"a": 1})
    with pytest.raises(ValueError, match=">= 0"):
        js_divergence({"a": -1}, {"a": 1})


def test_mix_counts_nulls_as_a_value() -> None:
    frame = pl.DataFrame({"x": ["a", None, "a", "b"]})
    assert mix(frame, "x") == {"a": 0.5, "null": 0.25, "b": 0.25}
    with pytest.raises(ValueError, match="column 'y'"):
        mix(frame, "y")


def test_a_new_cluster_and_version_in_traffic_are_drift_and_the_cluster_is_uncovered() -> None:
    old = items([0] * 50 + [1] * 50)
    traffic = pl.concat([items([0] * 40 + [1] * 20, version="v2"), items([2] * 40, version="v2")])
    report = measure_drift(old, traffic, threshold=0.05, cluster_names=["billing", "git", "delete account"])
    assert report.by_dimension["model_version"] == pytest.approx(1.0)
    assert report.divergence == max(report.by_dimension.values()) == pytest.approx(1.0)
    assert report.by_dimension["task"] == pytest.approx(0.0)
    assert report.drifted and report.stale
    assert [(g.cluster, g.name, g.slice_share) for g in report.uncovered] == [(2, "delete account", 0.0)]
    assert report.uncovered[0].traffic_share == pytest.approx(0.4)


def test_a_representative_slice_is_fresh_until_it_is_too_old() -> None:
    traffic = items([0] * 500 + [1] * 300 + [2] * 200)
    sample = items([0] * 50 + [1] * 30 + [2] * 20)
    fresh = measure_drift(sample, traffic, threshold=0.05, age=timedelta(days=2), max_age=timedelta(days=14))
    assert fresh.divergence == pytest.approx(0.0, abs=1e-12)
    assert not fresh.uncovered and not fresh.stale
    old = measure_drift(sample, traffic, threshold=0.05, age=timedelta(days=20), max_age=timedelta(days=14))
    assert old.too_old and old.stale and not old.drifted
    assert old.to_dict()["age_s"] == timedelta(days=20).total_seconds()


def test_an_under_covered_cluster_counts_as_uncovered() -> None:
    traffic = items([0] * 50 + [1] * 50)
    sample = items([0] * 95 + [1] * 5)  # cluster 1: 5% of the slice vs 50% of traffic
    report = measure_drift(sample, traffic, threshold=0.5, coverage_ratio=0.25)
    assert [g.cluster for g in report.uncovered] == [1]


def test_an_empty_slice_is_maximally_drifted() -> None:
    report = measure_drift(items([]), items([0, 1]), threshold=0.05)
    assert report.divergence == 1.0 and len(report.uncovered) == 2


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        measure_drift(items([0]), items([0]), threshold=2.0)
    with pytest.raises(ValueError, match="missing"):
        measure_drift(items([0]).drop("segment"), items([0]), threshold=0.1)
    with pytest.raises(ValueError, match="no rows"):
        measure_drift(items([0]), items([]), threshold=0.1)
