"""Two model versions side by side: every fingerprint measure and signal rate on the tasks both served.

For each (app, task) both versions served, and over all of them, each measure's value for A and B, the
difference B - A with a 95% interval, a two-sample z-test's p-value and a standardised effect size (Cohen's
h for shares, the difference over the pooled standard deviation for means). Rows are sorted by what
changed most: significant differences first (at `alpha`, Bonferroni over the rows), by effect size.
"""

from __future__ import annotations

import math

import polars as pl

from flywheel_feedback.labeling.fingerprints import MEASURE_BY_NAME, Z95, summarise

GROUP_KEYS = ("app", "task")


def diff_models(
    features: pl.DataFrame, a: tuple[str, str], b: tuple[str, str], *, alpha: float = 0.01,
    group_keys: tuple[str, ...] = GROUP_KEYS,
) -> pl.DataFrame:
    """`a` and `b` are (model_id, model_version); `features` from fingerprints.interaction_features."""
    def served(ref: tuple[str, str]) -> pl.DataFrame:
        return features.filter((pl.col("model_id") == ref[0]) & (pl.col("model_version") == ref[1]))

    fa, fb = served(a), served(b)
    if fa.is_empty() or fb.is_empty():
        missing = [f"{m}@{v}" for (m, v), f in ((a, fa), (b, fb)) if f.is_empty()]
        raise ValueError(f"no interactions served by {', '.join(missing)}")
    shared = fa.select(group_keys).unique().join(fb.select(group_keys).unique(), on=list(group_keys))
    if shared.is_empty():
        raise ValueError(f"{a[0]}@{a[1]} and {b[0]}@{b[1]} served no (app, task) in common")
    fa, fb = fa.join(shared, on=list(group_keys)), fb.join(shared, on=list(group_keys))
    all_tasks = [pl.lit("all").alias(k) for k in group_keys]
    sa = pl.concat([summarise(fa, group_keys), summarise(fa.with_columns(all_tasks), group_keys)])
    sb = pl.concat([summarise(fb, group_keys), summarise(fb.with_columns(all_tasks), group_keys)])
    joined = sa.join(sb, on=[*group_keys, "measure", "kind"], suffix="_b").rename(
        {"n": "n_a", "mean": "a", "var": "var_a", "ci_low": "a_low", "ci_high": "a_high", "mean_b": "b"})
    rows = []
    for r in joined.iter_rows(named=True):
        rows.append({**{k: r[k] for k in group_keys}, "measure": r["measure"], **_compare(r)})
    frame = pl.DataFrame(rows)
    cutoff = alpha / max(frame.height, 1)
    return (
        frame.with_columns((pl.col("p_value") < cutoff).alias("significant"))
        .sort(["significant", "effect"], descending=[True, True], nulls_last=True)
        .with_columns(pl.col("measure").replace_strict({m: d.what for m, d in MEASURE_BY_NAME.items()},
                                                       default=pl.col("measure")).alias("what"))
    )


def _compare(r: dict[str, object]) -> dict[str, float | int]:
    kind = r["kind"]
    na, nb = int(r["n_a"]), int(r["n_b"])  # type: ignore[call-overload]
    a, b = float(r["a"]), float(r["b"])  # type: ignore[arg-type]
    va, vb = float(r["var_a"] or 0.0), float(r["var_b"] or 0.0)  # type: ignore[arg-type]
    if kind == "share":
        pooled = (a * na + b * nb) / (na + nb)
        se_test = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / na + 1 / nb))
        se = math.sqrt(a * (1 - a) / na + b * (1 - b) / nb)
        effect = abs(2 * math.asin(math.sqrt(b)) - 2 * math.asin(math.sqrt(a)))
    else:
        se_test = se = math.sqrt(va / na + vb / nb)
        pooled_sd = math.sqrt((va * na + vb * nb) / (na + nb))
        effect = abs(b - a) / pooled_sd if pooled_sd > 0 else 0.0
    change = b - a
    p = math.erfc(abs(change) / se_test / math.sqrt(2)) if se_test > 0 else (0.0 if change else 1.0)
    return {"n_a": na, "n_b": nb, "a": a, "b": b, "change": change, "ci_low": change - Z95 * se,
            "ci_high": change + Z95 * se, "p_value": p, "effect": effect}
