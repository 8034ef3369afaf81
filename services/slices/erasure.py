"""Erasing interactions from every published version of the eval slices and training exports.

Versions are immutable, except for this: a person who asked to be forgotten must leave every version, the old
ones too, or the right to erasure would end at the first slice that sampled them. So, for each slice and export
table holding one of the interactions:

- Every version holding them is rewritten in place: the files holding the rows are replaced by files without
  them (a slice's retired items too), in one commit whose metadata (`flywheel.erasure`) records, per version, the
  new files with their SHA-256 and how many rows each lost: counts and the erasure id, no interaction ids. The
  table is append-only (delta.appendOnly): the property is lifted for that commit only. Readers amend the
  version's manifest from that record (`versions.amended`), so an old version stays readable and verifiable,
  says which erasures it went through, and an eval run on it again differs only by the erased rows.
  The alternative, marking old versions erased and unreadable, would make every version that ever sampled one
  erased person unusable: with steady erasure requests, soon all of them.
- When the latest version lost rows, the next version is published: the same rows less the erased ones, its
  manifest's `reason` and `erasure` saying why, its parent the amended latest. Consumers that follow the latest
  version (and the announcements on Kafka) see a new version rather than a silent change; renewal starts from it.

The replaced files are deleted by the caller's vacuum (services/privacy/erase.py), after which time travel to the
versions before the erasure fails: a version is read at the Delta version its (amended) manifest names.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from flywheel_feedback.labeling.slicing import HUMAN
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import SLICE_RETIRED_SCHEMA
from flywheel_feedback.services.slices.manifest import counts
from flywheel_feedback.services.slices.versions import (
    ATTEMPTS,
    DATA,
    ERASURE_METADATA,
    EXPORTS_PREFIX,
    RETIRED,
    SLICES_PREFIX,
    CommitLostError,
    VersionExistsError,
    commit,
    list_roots,
    list_versions,
    open_version,
    part_schemas,
    publish,
    read_frame,
    table_of,
    write_part,
)

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, RemoveAction

    from flywheel_feedback.services.lake.delta import TableSpec

log = logging.getLogger(__name__)

ID_COLUMNS: Final = ("interaction_id", "chosen_interaction_id")  # a preference pair is about both interactions
_NOT_INHERITED: Final = ("format", "version", "content_hash", "files", "table", "erasures", "erasure")


@dataclass(frozen=True)
class VersionsErased:
    """What an erasure removed from one slice or export."""

    root: str
    rows: int  # rows removed, over every version (a slice's retired items included)
    versions: dict[int, int] = field(default_factory=dict)  # version -> its data rows removed
    new_version: int | None = None  # published without the rows (the latest version lost some)


def erase_from_versions(
    store: ObjectStore, ids: pl.Series, *, erasure_id: str, at: datetime
) -> list[VersionsErased]:
    """Remove the rows of the interactions `ids` from every version of every slice and export."""
    found = []
    for prefix in (SLICES_PREFIX, EXPORTS_PREFIX):
        for root in list_roots(store, prefix):
            erased = erase_root(store, root, ids, erasure_id=erasure_id, at=at)
            if erased is not None:
                found.append(erased)
    return found


def erase_root(
    store: ObjectStore, root: str, ids: pl.Series, *, erasure_id: str, at: datetime
) -> VersionsErased | None:
    """One slice's (export's) versions without the interactions `ids`; None when none of them held one."""
    rows, new_version = 0, None
    versions: dict[int, int] = {}
    for _ in range(ATTEMPTS):
        changes = _rewrite_versions(store, root, ids, erasure_id=erasure_id, at=at)
        if changes is None:
            break
        for version, change in changes.items():
            rows += sum(change["rows_removed"].values())
            versions[version] = versions.get(version, 0) + change["rows_removed"].get(DATA, 0)
        latest = list_versions(store, root)[-1]
        lost = changes.get(latest, {}).get("rows_removed", {}).get(DATA, 0)
        if not lost:
            break
        try:
            new_version = publish_without(store, root, latest, removed=lost, erasure_id=erasure_id, at=at)
            break
        except VersionExistsError:  # a renewal or export published meanwhile: look at that version too
            log.info("%s: a version was published during the erasure; erasing from it too", root)
    if not versions:
        return None
    return VersionsErased(root, rows, versions, new_version)


def _rewrite_versions(
    store: ObjectStore, root: str, ids: pl.Series, *, erasure_id: str, at: datetime
) -> dict[int, dict[str, Any]] | None:
    """One commit replacing the files that hold `ids`; returns, per version changed, its new files and the rows
    each lost (None: no file holds one)."""
    spec = table_of(root)
    for _ in range(ATTEMPTS):
        table = delta.open_table(store, spec)
        if table is None:
            return None
        changes, actions = _rewritten(store, spec, table, ids)
        if not changes:
            return None
        record = {"id": erasure_id, "at": at.isoformat(),
                  "versions": {str(v): change for v, change in sorted(changes.items())}}
        try:
            _set_append_only(table, False, erasure_id)
            table = delta.open_table(store, spec)
            assert table is not None
            commit(store, spec, table, actions, metadata={ERASURE_METADATA: record}, transaction=None)
        except CommitLostError:
            continue  # another commit landed meanwhile: read the table again
        finally:
            reloaded = delta.open_table(store, spec)
            if reloaded is not None:
                _set_append_only(reloaded, True, erasure_id)
        log.info("%s: erasure %s rewrote versions %s", root, erasure_id, sorted(changes))
        return changes
    raise RuntimeError(f"erasing from {root} in {store.url}: {ATTEMPTS} attempts lost to concurrent commits")


def _rewritten(
    store: ObjectStore, spec: TableSpec, table: DeltaTable, ids: pl.Series
) -> tuple[dict[int, dict[str, Any]], list[AddAction | RemoveAction]]:
    from deltalake.transaction import RemoveAction

    index = delta.file_index(store, spec, version=table.version())
    wanted = ids.cast(pl.String).implode()
    schemas = part_schemas(spec)
    changes: dict[int, dict[str, Any]] = {}
    actions: list[AddAction | RemoveAction] = []
    now = int(time.time() * 1000)
    for row in index.iter_rows(named=True):
        path, version = row["path"], int(row["partition.version"])
        role = str(row.get("partition.role") or "data")
        frame = pl.read_parquet(io.BytesIO(store.get(f"{spec.name}/{path}")))
        hit = pl.any_horizontal([pl.col(c).is_in(wanted) for c in ID_COLUMNS if c in frame.columns])
        matched = frame.select(hit.fill_null(False)).to_series()
        removed = int(matched.sum())
        if not removed:
            continue
        name = f"{role}.parquet"
        action, entry = write_part(store, spec, version, name, frame.filter(~matched), schemas[name])
        values: dict[str, str | None] = {"version": str(version)}
        if "role" in spec.partition_by:
            values["role"] = role
        actions += [action, RemoveAction(path, True, now, size=int(row["size_bytes"]), partition_values=values)]
        change = changes.setdefault(version, {"files": {}, "rows_removed": {}})
        change["files"][name] = entry
        change["rows_removed"][name] = removed
    return changes, actions


def _set_append_only(table: DeltaTable, on: bool, erasure_id: str) -> None:
    from deltalake import CommitProperties

    value = "true" if on else "false"
    if table.metadata().configuration.get("delta.appendOnly") == value:
        return
    table.alter.set_table_properties(
        {"delta.appendOnly": value},
        commit_properties=CommitProperties(custom_metadata={"flywheel.erasure_step": f"{erasure_id}: append-only "
                                                                                     f"{value}"}),
    )


def publish_without(
    store: ObjectStore, root: str, parent_version: int, *, removed: int, erasure_id: str, at: datetime
) -> int:
    """Publish the next version: `parent_version`'s rows as the erasure left them, its manifest saying why."""
    parent = open_version(store, root, parent_version)
    rows = read_frame(store, parent)
    parts = {DATA: rows}
    if "role" in table_of(root).partition_by:
        parts[RETIRED] = pl.DataFrame(schema=SLICE_RETIRED_SCHEMA)  # nothing retired: only erased
    version = parent_version + 1
    manifest = erasure_manifest(parent.manifest, rows, parent_version=parent_version, removed=removed,
                                erasure_id=erasure_id, at=at)
    publish(store, root, version, parts, manifest)
    log.info("%s: v%d published without the %d rows erasure %s removed from v%d", root, version, removed,
             erasure_id, parent_version)
    return version


def erasure_manifest(
    parent: dict[str, Any], rows: pl.DataFrame, *, parent_version: int, removed: int, erasure_id: str, at: datetime
) -> dict[str, Any]:
    """The parent's manifest for its rows less the erased ones: same definition, lineage and drift (the traffic
    they came from is the same), counts of what is left, and why the version exists."""
    manifest = {k: v for k, v in parent.items() if k not in _NOT_INHERITED}
    manifest.update(
        created_at=at.isoformat(),
        reason=f"erasure {erasure_id}: {removed} rows of v{parent_version} removed",
        rows=rows.height,
        parent={"version": parent_version, "content_hash": parent.get("content_hash")},
        erasure={"id": erasure_id, "parent_version": parent_version, "rows_removed": removed},
    )
    if isinstance(parent.get("counts"), dict):
        manifest["counts"] = _recount(parent["counts"], rows)
    if parent.get("kind") == "slice":
        gold_share = rows.filter(pl.col("label_source") == HUMAN).height / rows.height if rows.height else 0.0
        minimum = float((parent.get("definition") or {}).get("min_gold_share", 0.0))
        manifest.update(gold_share=round(gold_share, 6), gold_share_met=gold_share >= minimum,
                        changes={"kept": rows.height, "added": 0, "retired": 0, "retired_by_reason": {},
                                 "erased": removed})
    return manifest


def _recount(old: dict[str, Any], rows: pl.DataFrame) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in old.items():
        if key == "by_cluster" and "topic_cluster" in rows.columns:
            names = value if isinstance(value, dict) else {}
            found[key] = {k: {"name": (names.get(k) or {}).get("name"), "rows": n}
                          for k, n in counts(rows, "topic_cluster").items()}
            continue
        column = "label_name" if key == "by_label" else key.removeprefix("by_")
        found[key] = counts(rows, column) if column in rows.columns else value
    return found
