"""Deleting rows from a Delta table so that nothing of them is left: not in the data files, not in the log.

`delete_rows` is what a Delta DELETE does (the files holding matching rows are replaced, in one commit of remove
and add actions with dataChange=true, by files without those rows) minus one thing: delta-rs's DELETE writes its
predicate into the commit's `operationParameters`, so deleting `user_id = 'u-42'` would leave that id in the log,
which outlives the files (and is never cleaned up in the slice and export tables). Here the commit carries only
the caller's metadata (an erasure id). The replacement files are written by our own writer, so the log records
statistics only of the table's `stats` columns (TableSpec), which hold no personal data.

After the commit the replaced files are still on disk (time travel could read them) until `purge` vacuums them
with no retention; `purge` also cleans up the log of a table made before its statistics were limited (whose
older entries may hold any column's min and max) by checkpointing and removing the entries before the
checkpoint. Tables are searched whole: an erasure reads the match columns of every file, and rewrites only the
files holding a match.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.delta import STATS_LIMITED_AT, TableSpec
from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, RemoveAction

log = logging.getLogger(__name__)

ATTEMPTS: Final = 10  # commits lost to concurrent ones (a compaction removed a file we rewrote) before giving up
ORPHAN_AGE_H: Final = 1  # files no commit names are removed by `purge` once this old (younger: a writer's, in flight)


@dataclass(frozen=True)
class Deleted:
    """What `delete_rows` removed from one table."""

    table: str
    rows: pl.DataFrame  # the rows deleted (every column), for the caller's bookkeeping (vote counts)
    files_rewritten: int
    version: int | None  # the commit's version (None: nothing matched, nothing committed)


def delete_rows(
    store: ObjectStore,
    spec: TableSpec,
    match: pl.Expr,
    *,
    columns: Sequence[str],
    metadata: dict[str, Any],
) -> Deleted:
    """Delete the rows for which `match` (over `columns`) is true, in one commit carrying `metadata`."""
    from deltalake.exceptions import CommitFailedError

    unknown = [c for c in columns if c not in spec.schema]
    if unknown or not columns:
        raise ValueError(f"expected columns of {spec.name} to match on, got {list(columns)} (unknown: {unknown})")
    for attempt in range(1, ATTEMPTS + 1):
        table = delta.open_table(store, spec)
        if table is None:
            return Deleted(spec.name, pl.DataFrame(schema=spec.schema), 0, None)
        delta.ensure_configuration(store, spec)
        table = delta.open_table(store, spec)
        assert table is not None
        index = delta.file_index(store, spec, version=table.version())
        hits = _files_with_matches(store, spec, index, match, columns)
        if not hits:
            return Deleted(spec.name, pl.DataFrame(schema=spec.schema), 0, None)
        removed, actions = _rewrite(store, spec, index, hits, match)
        try:
            _commit(table, spec, actions, metadata)
        except CommitFailedError as e:
            log.info("deleting from %s lost to a concurrent commit (attempt %d of %d): %s", spec.name, attempt,
                     ATTEMPTS, e)
            continue
        version = table.version()
        log.info("deleted %d rows from %s (%d files rewritten) at v%d", removed.height, spec.name, len(hits), version)
        return Deleted(spec.name, removed, len(hits), version)
    raise RuntimeError(f"deleting rows from {spec.name} in {store.url}: {ATTEMPTS} attempts lost to concurrent commits")


def _files_with_matches(
    store: ObjectStore, spec: TableSpec, index: pl.DataFrame, match: pl.Expr, columns: Sequence[str]
) -> list[str]:
    hits = []
    for path in index.get_column("path").to_list() if index.height else []:
        found = delta.read_files(store, spec, [path], columns=columns).select(match.fill_null(False).any()).item()
        if found:
            hits.append(path)
    return hits


def _rewrite(
    store: ObjectStore, spec: TableSpec, index: pl.DataFrame, paths: list[str], match: pl.Expr
) -> tuple[pl.DataFrame, list[AddAction | RemoveAction]]:
    """The rows deleted, and the actions replacing `paths` by files holding the rest (a file left empty is only
    removed)."""
    from deltalake.transaction import RemoveAction

    actions: list[AddAction | RemoveAction] = []
    removed = []
    now = int(time.time() * 1000)
    sizes = dict(zip(index.get_column("path").to_list(), index.get_column("size_bytes").to_list(), strict=True))
    for path in paths:
        rows = delta.read_files(store, spec, [path])
        matched = rows.select(match.fill_null(False)).to_series()
        removed.append(rows.filter(matched))
        kept = rows.filter(~matched)
        if kept.height:
            actions += delta.write_files(store, spec, kept)
        actions.append(RemoveAction(path, True, now, size=sizes[path], partition_values=_partition_values(index, path,
                                                                                                          spec)))
    return pl.concat(removed), actions


def _partition_values(index: pl.DataFrame, path: str, spec: TableSpec) -> dict[str, str | None]:
    row = index.filter(pl.col("path") == path).row(0, named=True)
    return {c: _text(row.get(f"partition.{c}")) for c in spec.partition_by}


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _commit(table: DeltaTable, spec: TableSpec, actions: list[AddAction | RemoveAction],
            metadata: dict[str, Any]) -> None:
    from deltalake import CommitProperties

    table.create_write_transaction(
        actions, mode="append", schema=table.schema(), partition_by=list(spec.partition_by) or None,
        commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=50),
    )


@dataclass(frozen=True)
class Purged:
    table: str
    vacuumed: int  # files deleted from the store
    log_entries_removed: int  # log files removed (a table whose older log may hold any column's statistics)


def purge(store: ObjectStore, name: str, *, clean_log: bool = True) -> Purged:
    """Delete from the store every file that a commit removed (no retention: time travel to the versions before
    is gone), and files no commit names that are older than ORPHAN_AGE_H (a writer that died before its commit);
    younger ones may be a running writer's and stay. With `clean_log`, a table made before its statistics were
    limited (STATS_LIMITED_AT) is checkpointed and its log entries before the checkpoint removed."""
    from deltalake import DeltaTable

    uri, options = store.table_uri(name), store.storage_options()
    table = DeltaTable(uri, storage_options=options)
    vacuumed = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    vacuumed += table.vacuum(retention_hours=ORPHAN_AGE_H, dry_run=False, enforce_retention_duration=False, full=True)
    removed = 0
    config = table.metadata().configuration
    limited_at = config.get(STATS_LIMITED_AT)
    keeps_history = config.get("delta.enableExpiredLogCleanup", "").lower() == "false"  # its log is its record
    if clean_log and not keeps_history and limited_at is not None and _oldest_entry(store, name) < int(limited_at):
        removed = clean_log_before_checkpoint(store, name)
    return Purged(name, len(vacuumed), removed)


def clean_log_before_checkpoint(store: ObjectStore, name: str) -> int:
    """Checkpoint the table at its current version and remove every log entry (commits, older checkpoints)
    before it: readers start from the checkpoint, which holds the live files and the writers' app transactions.
    Time travel to the versions before is gone, and a reader following the log from an older version (the
    labeler) finds its commits missing and reads the table whole instead."""
    from deltalake import DeltaTable

    table = DeltaTable(store.table_uri(name), storage_options=store.storage_options())
    table.create_checkpoint()
    checkpoint = table.version()
    removed = 0
    for key in store.list(f"{name}/_delta_log/"):
        version = _entry_version(key)
        if version is not None and version < checkpoint:
            store.delete(key)
            removed += 1
    log.info("%s: log entries before the checkpoint at v%d removed (%d files)", name, checkpoint, removed)
    return removed


def _oldest_entry(store: ObjectStore, name: str) -> int:
    versions = [v for k in store.list(f"{name}/_delta_log/") if (v := _entry_version(k)) is not None]
    return min(versions, default=0)


def _entry_version(key: str) -> int | None:
    """The version a log file belongs to (`00000000000000000012.json`, `...12.checkpoint.parquet`, `.crc`)."""
    leaf = key.rsplit("/", 1)[-1]
    head = leaf.split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) == 20 else None
