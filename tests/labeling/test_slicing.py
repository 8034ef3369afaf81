"""Stratified sampling and renewal proposals on hand-made frames: allocation, gold first, the confidence
threshold, keep / retire / fill with reasons, the renewal queue's kinds, priorities and budget."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from flywheel_feedback.labeling.slicing import (
    RETIRE_GONE,
    RETIRE_LABEL,
    RETIRE_MISSING,
    RETIRE_OLD,
    RETIRE_OVER,
    allocate,
    eligible_expr,
    propose,
    renewal_queue,
    stratum_expr,
    uniform_draw,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def traffic(strata: Sequence[str], *, source: Sequence[str] | None = None, confidence: Sequence[float] | None = None,
            prefix: str = "i") -> pl.DataFrame:
    n = len(strata)
    frame = pl.DataFrame({
        "interaction_id": [f"{prefix}{j:04d}" for j in range(n)],
        "stratum": list(strata),
        "label_source": list(source or ["weak"] * n),
        "confidence": list(confidence or [0.95] * n),
        "covered": [True] * n,
        "ts": [T0 + timedelta(minutes=j) for j in range(n)],
    })
    return frame.with_columns(eligible_expr(0.8).alias("eligible"))


def current(ids: Sequence[str], strata: Sequence[str], **columns: Sequence[object]) -> pl.DataFrame:
    n = len(ids)
    base: dict[str, Sequence[object]] = {
        "interaction_id": list(ids), "stratum": list(strata), "ts": [T0] * n, "label_source": ["weak"] * n,
        "present": [True] * n, "eligible": [True] * n,
    }
    return pl.DataFrame(base | columns)


def test_allocation_is_proportional_sums_to_size_and_keeps_rare_strata() -> None:
    counts = {"a": 700, "b": 200, "c": 95, "d": 5}
    targets = allocate(counts, size=100, min_per_stratum=1)
    assert sum(targets.values()) == 100
    assert targets["a"] == pytest.approx(70, abs=1) and targets["b"] == pytest.approx(20, abs=1)
    assert targets["d"] >= 1
    assert allocate(counts, size=100, min_per_stratum=0).get("d", 0) in (0, 1)  # its quota is 0.5


def test_allocation_takes_everything_when_size_exceeds_traffic_and_caps_at_counts() -> None:
    assert allocate({"a": 3, "b": 2}, size=10) == {"a": 3, "b": 2}
    targets = allocate({"a": 1000, "b": 2}, size=500, min_per_stratum=5)
    assert targets["b"] == 2 and targets["a"] == 498


def test_allocation_when_floors_exceed_size_favours_the_largest_strata() -> None:
    targets = allocate({"a": 50, "b": 40, "c": 30, "d": 1}, size=3, min_per_stratum=2)
    assert targets == {"a": 2, "b": 1}


def test_allocation_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="size"):
        allocate({"a": 1}, size=0)
    with pytest.raises(ValueError, match="min_per_stratum"):
        allocate({"a": 1}, size=1, min_per_stratum=-1)
    with pytest.raises(ValueError, match="counts"):
        allocate({"a": -1}, size=1)


def test_uniform_draw_is_fixed_by_seed_and_id_and_uniform() -> None:
    ids = pl.Series([f"id-{i}" for i in range(20_000)])
    a, b = uniform_draw(ids, 0), uniform_draw(ids, 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, uniform_draw(ids, 1))
    assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.01
    assert np.histogram(a, bins=10, range=(0, 1))[0].min() > 1800
    # an id's draw does not depend on its neighbours
    assert uniform_draw(ids[5:6], 0)[0] == a[5]


def test_stratum_names_and_unknown_strata() -> None:
    frame = pl.DataFrame({"task": ["t"], "segment": [None], "model_version": ["v"], "topic_cluster": [3]})
    assert frame.select(stratum_expr(["task", "segment", "topic_cluster"])).item() == "t|null|3"
    assert frame.select(stratum_expr([])).item() == "all"
    with pytest.raises(ValueError, match="unknown"):
        stratum_expr(["colour"])


def test_first_build_takes_gold_first_and_never_unconfident_weak_labels() -> None:
    strata = ["s1"] * 10 + ["s2"] * 10
    source = ["human"] * 2 + ["weak"] * 8 + ["weak"] * 10
    confidence = [0.5] * 2 + [0.95] * 8 + [0.5] * 7 + [0.95] * 3
    pool = traffic(strata, source=source, confidence=confidence)
    targets = {"s1": 5, "s2": 5}
    empty = current([], [])
    proposal = propose(empty, pool.filter(pl.col("eligible")), targets, seed=0)
    chosen = proposal.fill
    assert chosen.filter(pl.col("stratum") == "s1").height == 5
    assert set(chosen.filter(pl.col("label_source") == "human").get_column("interaction_id")) == {"i0000", "i0001"}
    assert chosen.filter(pl.col("stratum") == "s2").get_column("confidence").ge(0.8).all()
    assert proposal.shortfall == {"s2": 2}  # only 3 confident labels for a target of 5
    assert proposal.retire.is_empty() and proposal.keep.is_empty()


def test_the_sample_is_reproducible() -> None:
    pool = traffic(["s"] * 200)
    def chosen(frame: pl.DataFrame, seed: int) -> list[str]:
        return sorted(propose(current([], []), frame, {"s": 20}, seed=seed).fill.get_column("interaction_id"))

    assert chosen(pool, 4) == chosen(pool.reverse(), 4)
    assert chosen(pool, 4) != chosen(pool, 5)


def test_renewal_keeps_retires_with_reasons_and_fills() -> None:
    old = current(
        ["k1", "k2", "old", "gone", "unsure", "missing", "o1", "o2", "o3"],
        ["s1", "s1", "s1", "s9", "s1", "s1", "s2", "s2", "s2"],
        ts=[T0, T0, T0 - timedelta(days=40), T0, T0, T0, T0, T0, T0],
        eligible=[True, True, True, True, False, True, True, True, True],
        present=[True, True, True, True, True, False, True, True, True],
        label_source=["weak", "human", "weak", "weak", "weak", "weak", "human", "weak", "weak"],
    )
    pool = traffic(["s1"] * 10 + ["s2"] * 10 + ["s3"] * 10, prefix="n")
    targets = {"s1": 4, "s2": 1, "s3": 3}
    proposal = propose(old, pool, targets, cutoff=T0 - timedelta(days=30), seed=0)
    reasons = dict(proposal.retire.select("interaction_id", "reason").iter_rows())
    assert reasons["old"] == RETIRE_OLD
    assert reasons["gone"] == RETIRE_GONE
    assert reasons["unsure"] == RETIRE_LABEL
    assert reasons["missing"] == RETIRE_MISSING
    # s2 keeps one of three: the human item first
    assert set(proposal.keep.get_column("interaction_id")) == {"k1", "k2", "o1"}
    assert reasons["o2"] == reasons["o3"] == RETIRE_OVER
    filled = proposal.fill.group_by("stratum").len().sort("stratum").rows()
    assert filled == [("s1", 2), ("s3", 3)]
    assert proposal.rows == sum(targets.values())
    assert not set(proposal.fill.get_column("interaction_id")) & set(old.get_column("interaction_id"))


def test_propose_refuses_frames_without_the_columns_it_needs() -> None:
    with pytest.raises(ValueError, match="current"):
        propose(pl.DataFrame({"interaction_id": ["a"]}), traffic(["s"]), {"s": 1})
    with pytest.raises(ValueError, match="one candidate row per"):
        propose(current([], []), pl.concat([traffic(["s"]), traffic(["s"])]), {"s": 1})


def version_rows(n: int, *, human: int = 0, clusters: Sequence[int] | None = None) -> pl.DataFrame:
    return pl.DataFrame({
        "interaction_id": [f"v{j:03d}" for j in range(n)],
        "stratum": ["s"] * n,
        "topic_cluster": list(clusters or [0] * n),
        "label_source": ["human"] * human + ["weak"] * (n - human),
        "confidence": [0.8 + 0.01 * (j % 10) for j in range(n)],
    }, schema_overrides={"topic_cluster": pl.Int32})


def test_renewal_queue_has_the_three_kinds_most_urgent_first() -> None:
    version = version_rows(20, clusters=[0] * 15 + [7] * 5)
    unlabeled = pl.DataFrame({
        "interaction_id": [f"u{j}" for j in range(6)], "stratum": ["s"] * 6, "topic_cluster": [7] * 6,
        "confidence": [0.55] * 6,
    }, schema_overrides={"topic_cluster": pl.Int32})
    queue = renewal_queue(version, unlabeled, shortfall={"s": 3}, uncovered_clusters=[7], min_gold_share=0.1,
                          budget=100, reason_prefix="slice x v2")
    assert set(queue.get_column("queue")) == {"renewal"}
    assert queue.get_column("interaction_id").is_unique().all()
    kinds = queue.with_columns(pl.col("reason").str.extract(r"v2: (\w+)").alias("kind"))
    by_kind = dict(kinds.group_by("kind").len().iter_rows())
    assert by_kind == {"stratum": 3, "weak": 5, "gold": 2}
    assert queue.get_column("priority").is_sorted(descending=True)
    assert queue.head(3).get_column("interaction_id").str.starts_with("u").all()
    assert queue.get_column("priority").le(1.0).all()


def test_renewal_queue_respects_its_budget_and_a_met_gold_share() -> None:
    version = version_rows(10, human=5)
    none = pl.DataFrame(schema={"interaction_id": pl.String, "stratum": pl.String, "topic_cluster": pl.Int32,
                                "confidence": pl.Float64})
    assert renewal_queue(version, none, shortfall={}, uncovered_clusters=[], min_gold_share=0.5, budget=10,
                         reason_prefix="x").is_empty()
    some = renewal_queue(version_rows(10), none, shortfall={}, uncovered_clusters=[], min_gold_share=0.5, budget=2,
                         reason_prefix="x")
    # the gold share is short by 5; the budget keeps the 2 least confident
    assert some.get_column("interaction_id").to_list() == ["v000", "v001"]
    with pytest.raises(ValueError, match="budget"):
        renewal_queue(version, none, shortfall={}, uncovered_clusters=[], min_gold_share=0.5, budget=-1,
                      reason_prefix="x")
