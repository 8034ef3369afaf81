"""Which data fed which model: links from a model version to the export it was trained on and the slice
versions it was evaluated on (with its scores), in the lake's `models/lineage` table.

Scores on two versions of one slice are not comparable (the items differ); `comparability` says which
pairs of a slice's scores are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import EXPORT_VERSIONS, MODEL_LINEAGE, slice_table
from flywheel_feedback.services.slices.versions import export_root, resolve, slice_root

TRAINED_ON = "trained_on"
EVALUATED_ON = "evaluated_on"
_AT = re.compile(r"^(?P<name>[^@\s]+)@(?P<version>[^@\s]+)$")


class LineageError(FlywheelError, ValueError):
    """A reference that names no model, export or slice version."""


@dataclass(frozen=True)
class Ref:
    name: str
    version: str


def parse_ref(text: str, what: str) -> Ref:
    """`NAME@VERSION` (e.g. support-llm@2026-11-15, sft@3)."""
    m = _AT.match(text.strip())
    if m is None:
        raise LineageError(f"expected {what} as NAME@VERSION, got {text!r}")
    return Ref(m["name"], m["version"])


def _dataset_version(ref: Ref, what: str) -> int:
    try:
        return int(ref.version.removeprefix("v"))
    except ValueError:
        raise LineageError(f"expected the {what} version as a number, got {ref.version!r}") from None


def record(
    store: ObjectStore,
    model: Ref,
    *,
    trained_on: Ref | None = None,
    evaluated_on: Ref | None = None,
    metrics: Mapping[str, float] | None = None,
    now: datetime | None = None,
) -> pl.DataFrame:
    """Append the links; the export and slice versions must be published in this lake. Returns the rows."""
    if trained_on is None and evaluated_on is None:
        raise LineageError("expected --trained-on EXPORT@VERSION and/or --evaluated-on SLICE@VERSION")
    if metrics is not None and evaluated_on is None:
        raise LineageError("metrics are scores on a slice: give --evaluated-on SLICE@VERSION with them")
    at = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    if trained_on is not None:
        if trained_on.name not in EXPORT_VERSIONS:
            raise LineageError(f"no export kind {trained_on.name!r}; kinds: {', '.join(EXPORT_VERSIONS)}")
        root = export_root(trained_on.name)
        version = resolve(store, root, _dataset_version(trained_on, "export"))
        rows.append({"relation": TRAINED_ON, "dataset": root, "dataset_version": version, "metrics": None})
    if evaluated_on is not None:
        root = slice_root(evaluated_on.name)
        version = resolve(store, root, _dataset_version(evaluated_on, "slice"))
        rows.append({"relation": EVALUATED_ON, "dataset": root, "dataset_version": version,
                     "metrics": json.dumps(dict(metrics or {}), sort_keys=True)})
    frame = pl.DataFrame(
        [{"model_id": model.name, "model_version": model.version, **r, "recorded_at": at} for r in rows],
        schema=MODEL_LINEAGE.schema,
    )
    delta.append(store, MODEL_LINEAGE, frame)
    return frame


def read_lineage(store: ObjectStore) -> pl.DataFrame:
    if delta.open_table(store, MODEL_LINEAGE) is None:
        return pl.DataFrame(schema=MODEL_LINEAGE.schema)
    return delta.scan(store, MODEL_LINEAGE).collect().sort("recorded_at")


def model_lineage(lineage: pl.DataFrame, model: Ref) -> pl.DataFrame:
    """What `model` was trained and evaluated on, newest link of each (relation, dataset, version) only."""
    mine = lineage.filter((pl.col("model_id") == model.name) & (pl.col("model_version") == model.version))
    return mine.unique(["relation", "dataset", "dataset_version"], keep="last", maintain_order=True)


def comparability(lineage: pl.DataFrame) -> pl.DataFrame:
    """Every model's scores per slice, with `comparable` false where other models' scores on that slice come
    from a different version of it, and `compared_with` naming those versions."""
    scores = lineage.filter(pl.col("relation") == EVALUATED_ON).unique(
        ["model_id", "model_version", "dataset", "dataset_version"], keep="last", maintain_order=True)
    versions = scores.group_by("dataset").agg(pl.col("dataset_version").unique().sort().alias("slice_versions"))
    return (
        scores.join(versions, on="dataset")
        .with_columns((pl.col("slice_versions").list.len() == 1).alias("comparable"))
        .select("dataset", "dataset_version", "model_id", "model_version", "metrics", "comparable",
                "slice_versions")
        .sort("dataset", "model_id", "model_version")
    )


def not_comparable(scores: pl.DataFrame, a: Ref, b: Ref) -> list[str]:
    """Why the scores of models `a` and `b` cannot be compared: slices each was scored on at different versions."""
    def versions(ref: Ref) -> dict[str, set[int]]:
        mine = scores.filter((pl.col("model_id") == ref.name) & (pl.col("model_version") == ref.version))
        found: dict[str, set[int]] = {}
        for dataset, version in mine.select("dataset", "dataset_version").iter_rows():
            found.setdefault(dataset, set()).add(version)
        return found

    va, vb = versions(a), versions(b)
    reasons = []
    for dataset in sorted(va.keys() & vb.keys()):
        if va[dataset] != vb[dataset]:
            reasons.append(f"{dataset}: {a.name}@{a.version} scored on v{sorted(va[dataset])}, "
                           f"{b.name}@{b.version} on v{sorted(vb[dataset])}")
    return reasons


def interaction_lineage(store: ObjectStore, interaction_id: str, lineage: pl.DataFrame) -> pl.DataFrame:
    """Which export and slice versions hold `interaction_id`, and which models were trained or evaluated on them."""
    found: list[dict[str, Any]] = []
    tables = {export_root(kind): spec for kind, spec in EXPORT_VERSIONS.items()}
    prefix = slice_root("")
    for key in store.list(prefix):
        name = key.removeprefix(prefix).split("/", 1)[0]
        if name and key.endswith(".json") and "/_delta_log/" in key:
            tables[slice_root(name)] = slice_table(name)
    for root, spec in sorted(tables.items()):
        if delta.open_table(store, spec) is None:
            continue
        rows = delta.scan(store, spec).filter(pl.col("interaction_id") == interaction_id)
        if "role" in spec.partition_by:
            rows = rows.filter(pl.col("role") == "data")
        for version in sorted(set(rows.select("version").collect()["version"].to_list())):
            found.append({"dataset": root, "dataset_version": version})
    held = pl.DataFrame(found, schema={"dataset": pl.String, "dataset_version": pl.Int64})
    links = lineage.select("dataset", "dataset_version", "relation", "model_id", "model_version")
    return held.join(links, on=["dataset", "dataset_version"], how="left").sort("dataset", "dataset_version")
