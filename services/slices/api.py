"""What ML engineers call: load a slice or an export as a polars frame, pull one to disk, diff two versions.

    from flywheel_feedback.services.slices import load_slice
    frame = load_slice("support-reply")                  # latest version, from the lake at FLYWHEEL_LAKE_URL
    frame = load_slice("support-reply", version=3, lake="s3://bucket/lake")

A version is read as of its own commit (Delta time travel on `slices/<name>` or `exports/<kind>`): what it
returns never changes, whatever was published after it. Every read checks the data against the SHA-256 in
the version's manifest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import polars as pl

from flywheel_feedback.labeling.clusters import fit_topics
from flywheel_feedback.services.lake.store import ObjectStore, open_store
from flywheel_feedback.services.slices.definitions import DefinitionError
from flywheel_feedback.services.slices.traffic import NoTrafficError
from flywheel_feedback.services.slices.versions import (
    EXPORTS_PREFIX,
    MANIFEST,
    RETIRED,
    IntegrityError,
    VersionExistsError,
    VersionNotFoundError,
    export_root,
    open_version,
    read_file,
    read_frame,
    sha256,
    slice_root,
)

if TYPE_CHECKING:
    from flywheel_feedback.labeling.exports import Kind

# what a user can cause and fix (the CLI prints these without a traceback)
SLICE_ERRORS = (DefinitionError, NoTrafficError, VersionNotFoundError, IntegrityError, VersionExistsError)


def _store(lake: str | Path | ObjectStore | None, s3_options: Mapping[str, Any] | None) -> ObjectStore:
    if lake is None:
        from flywheel_feedback.services.settings import SliceSettings

        return SliceSettings().lake.open()
    if isinstance(lake, str | Path):
        return open_store(lake, **dict(s3_options or {}))
    return lake


def load_slice(
    name: str,
    version: int | None = None,
    *,
    lake: str | Path | ObjectStore | None = None,
    s3_options: Mapping[str, Any] | None = None,
    columns: list[str] | None = None,
    verify: bool = True,
) -> pl.DataFrame:
    """A slice version (the latest when `version` is None) as a polars frame, verified against its hash."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a slice name, got {name!r}")
    store = _store(lake, s3_options)
    return read_frame(store, open_version(store, slice_root(name), version), columns=columns, verify=verify)


def load_export(
    kind: str,
    version: int | None = None,
    *,
    lake: str | Path | ObjectStore | None = None,
    s3_options: Mapping[str, Any] | None = None,
    verify: bool = True,
) -> pl.DataFrame:
    """A training export version (the latest when `version` is None) as a polars frame."""
    store = _store(lake, s3_options)
    return read_frame(store, open_version(store, export_root(kind), version), verify=verify)


def load_export_dataset(
    kind: str,
    version: int | None = None,
    *,
    lake: str | Path | ObjectStore | None = None,
    s3_options: Mapping[str, Any] | None = None,
    verify: bool = True,
) -> Any:
    """A training export version as a Hugging Face `datasets.Dataset` (needs the `datasets` package), its
    columns and rows those of `load_export`: what TRL's trainers take as their dataset."""
    try:
        from datasets import Dataset
    except ImportError as e:
        raise ImportError("load_export_dataset needs the `datasets` package: pip install datasets") from e
    frame = load_export(kind, version, lake=lake, s3_options=s3_options, verify=verify)
    return Dataset.from_polars(frame)


def pull(store: ObjectStore, root: str, version: int | None, dest: Path) -> list[Path]:
    """Copy a version's files (verified, the bytes the manifest hashed) and its manifest to `dest/<root>/v<k>/`;
    an export also gets data.jsonl, its records in the layout trainers read. Returns the paths."""
    from flywheel_feedback.services.slices.exports import JSONL, jsonl_bytes

    published = open_version(store, root, version)
    folder = dest / root / f"v{published.version}"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(published.files):
        path = folder / name
        path.write_bytes(read_file(store, published, name, verify=True))
        written.append(path)
    if root.startswith(f"{EXPORTS_PREFIX}/"):
        kind = cast("Kind", root.split("/", 1)[1])  # open_version checked it is a kind
        path = folder / JSONL
        data = jsonl_bytes(kind, read_frame(store, published))
        expected = published.manifest.get("derived_files", {}).get(JSONL)
        if expected is not None and expected["sha256"] != sha256(data):
            raise IntegrityError(f"{root} v{published.version}: the JSON lines made from its records do not match "
                                 f"the manifest's sha256 {expected['sha256']}")
        path.write_bytes(data)
        written.append(path)
    path = folder / MANIFEST
    path.write_text(json.dumps(published.manifest, indent=2, sort_keys=True))
    return [*written, path]


@dataclass(frozen=True)
class SliceDiff:
    name: str
    old: int
    new: int
    added: pl.DataFrame  # interaction_id, topic, stratum, label_source, added_in
    retired: pl.DataFrame  # interaction_id, topic, stratum, reason
    kept: int
    relabeled: pl.DataFrame  # kept items whose label or its source changed
    by_cluster: pl.DataFrame  # topic_cluster, topic, rows in the old version, rows in the new one


def diff(store: ObjectStore, name: str, old: int, new: int) -> SliceDiff:
    """What changed between two versions of a slice (any two, not only parent and child)."""
    root = slice_root(name)
    if old == new:
        raise ValueError(f"expected two different versions, got v{old} twice")
    a_version, b_version = open_version(store, root, old), open_version(store, root, new)
    b_manifest = b_version.manifest
    a, b = read_frame(store, a_version), read_frame(store, b_version)
    keys = ["interaction_id", "topic", "stratum", "label_source"]
    added = b.join(a, on="interaction_id", how="anti").select(*keys, "added_in").sort("interaction_id")
    gone = a.join(b, on="interaction_id", how="anti").select("interaction_id", "topic", "stratum")
    reasons = pl.DataFrame(schema={"interaction_id": pl.String, "reason": pl.String})
    if b_manifest.get("parent", {}) and b_manifest["parent"]["version"] == old and RETIRED in b_version.files:
        reasons = read_frame(store, b_version, RETIRED).select("interaction_id", "reason")
    retired = gone.join(reasons, on="interaction_id", how="left").with_columns(
        pl.col("reason").fill_null(f"not in v{new}")
    ).sort("interaction_id")
    both = a.select("interaction_id", "label", "label_source").join(
        b.select("interaction_id", "label", "label_source"), on="interaction_id", how="inner", suffix="_new"
    )
    relabeled = both.filter(
        (pl.col("label") != pl.col("label_new")) | (pl.col("label_source") != pl.col("label_source_new"))
    ).sort("interaction_id")
    by_cluster = _cluster_mix(a, b, old=old, new=new, manifest=b_manifest)
    return SliceDiff(name, old, new, added, retired, both.height, relabeled, by_cluster)


def _cluster_mix(a: pl.DataFrame, b: pl.DataFrame, *, old: int, new: int, manifest: Mapping[str, Any]) -> pl.DataFrame:
    """Rows per topic cluster in each version. Each version named its clusters with its own model, so both
    are clustered afresh with one model (each version weighing half) to be comparable."""
    if a.is_empty() or b.is_empty():
        return pl.DataFrame(schema={"topic_cluster": pl.Int32, "topic": pl.String, f"v{old}": pl.UInt32,
                                    f"v{new}": pl.UInt32})
    definition = manifest.get("definition", {})
    texts = pl.concat([a.get_column("input"), b.get_column("input")])
    weights = pl.concat([pl.repeat(1.0 / a.height, a.height, eager=True), pl.repeat(1.0 / b.height, b.height,
                                                                                     eager=True)])
    k, seed = int(definition.get("clusters", 24)), int(definition.get("seed", 0))
    model = fit_topics(texts, weights=weights, k=k, seed=seed)
    frames = [
        frame.select(model.predict(frame.get_column("input")).alias("topic_cluster"))
        .group_by("topic_cluster").agg(pl.len().alias(f"v{version}"))
        for frame, version in ((a, old), (b, new))
    ]
    names = pl.DataFrame({"topic_cluster": range(len(model.names)), "topic": list(model.names)},
                         schema={"topic_cluster": pl.Int32, "topic": pl.String})
    return (
        names.join(frames[0], on="topic_cluster", how="left")
        .join(frames[1], on="topic_cluster", how="left")
        .fill_null(0)
        .sort("topic_cluster")
    )


def manifest_of(store: ObjectStore, name: str, version: int | None = None) -> dict[str, Any]:
    return open_version(store, slice_root(name), version).manifest

