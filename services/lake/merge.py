"""Delta MERGE on a table's key (`TableSpec.keys`): insert the rows whose key is new, or update matched rows.

Each call is one Delta commit, or none when nothing changes (delta-rs commits nothing for a MERGE without
effect), so a retried write leaves the table's version where it was. The first write to a table creates it in
the same commit. Two writers at once conflict (each MERGE reads the whole table); the loser reruns its MERGE on
the new version, so the result is as if they had run one after the other.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import polars as pl

from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake.delta import TableSpec, configuration, open_table
from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from deltalake import DeltaTable
    from deltalake.table import TableMerger

    _Merge = Callable[[DeltaTable], int]  # runs the MERGE on one version; returns the rows it changed

log = logging.getLogger(__name__)

ATTEMPTS: Final = 30
_BACKOFF_S: Final = 0.05
_MAX_BACKOFF_S: Final = 2.0


class MergeConflictError(FlywheelError):
    """Concurrent writers kept winning: the MERGE never got its commit in."""


@dataclass(frozen=True)
class Merged:
    rows: int  # rows inserted or updated
    version: int | None  # the table's version after the commit; None when nothing was committed


def insert_new(store: ObjectStore, spec: TableSpec, frame: pl.DataFrame) -> Merged:
    """One commit adding the rows of `frame` whose key the table does not hold yet (rows already there, whatever
    their other columns, are left alone). `frame` must not repeat a key."""
    rows = _conform(spec, frame)
    if rows.is_empty():
        return Merged(0, None)

    def merge(table: DeltaTable) -> int:
        metrics = _merger(table, spec, rows).when_not_matched_insert_all().execute()
        return int(metrics["num_target_rows_inserted"])

    return _committing(store, spec, merge, create_with=rows, what="insert")


def update_matched(store: ObjectStore, spec: TableSpec, frame: pl.DataFrame, *, columns: Sequence[str]) -> Merged:
    """One commit setting `columns` from `frame` on the rows with the same key (keys the table lacks are
    ignored). `frame` holds the key columns and `columns`, and must not repeat a key."""
    unknown = [c for c in [*spec.keys, *columns] if c not in spec.schema]
    if unknown or not columns:
        raise ValueError(f"expected columns of {spec.name} to update, got {list(columns)} (unknown: {unknown})")
    rows = frame.select([pl.col(c).cast(spec.schema[c]) for c in [*spec.keys, *columns]])
    _check_keys(spec, rows)
    if rows.is_empty():
        return Merged(0, None)

    def merge(table: DeltaTable) -> int:
        updates = {c: f"s.{c}" for c in columns}
        metrics = _merger(table, spec, rows).when_matched_update(updates).execute()
        return int(metrics["num_target_rows_updated"])

    return _committing(store, spec, merge, create_with=None, what="update")


def _conform(spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in spec.schema.names() if c not in frame.columns]
    if missing:
        raise ValueError(f"expected rows of {spec.name} with columns {spec.schema.names()}; missing {missing}")
    rows = frame.select([pl.col(c).cast(t) for c, t in spec.schema.items()])
    _check_keys(spec, rows)
    return rows


def _check_keys(spec: TableSpec, rows: pl.DataFrame) -> None:
    keys = list(spec.keys)
    if not keys:
        raise ValueError(f"{spec.name} declares no key to merge on")
    nulls = rows.select(pl.any_horizontal([pl.col(k).is_null() for k in keys]).sum()).item()
    if nulls:
        raise ValueError(f"{nulls} rows for {spec.name} have a null key ({', '.join(keys)})")
    repeated = rows.select(keys).is_duplicated().sum()
    if repeated:
        raise ValueError(f"{repeated} rows for {spec.name} repeat a key ({', '.join(keys)}): one row per key")


def _merger(table: DeltaTable, spec: TableSpec, rows: pl.DataFrame) -> TableMerger:
    from deltalake import WriterProperties

    predicate = " AND ".join(f"t.{k} = s.{k}" for k in spec.keys)
    return table.merge(
        rows.to_arrow(), predicate=predicate, source_alias="s", target_alias="t",
        writer_properties=WriterProperties(compression="ZSTD"),
    )


def _committing(
    store: ObjectStore,
    spec: TableSpec,
    merge: _Merge,
    *,
    create_with: pl.DataFrame | None,
    what: str,
) -> Merged:
    """`merge` on the latest version, rerun while a concurrent commit wins; creates the table with
    `create_with` (the rows an insert into an empty table adds) while it does not exist."""
    from deltalake.exceptions import CommitFailedError, DeltaError

    for attempt in range(1, ATTEMPTS + 1):
        table = open_table(store, spec)
        try:
            if table is None:
                if create_with is None:
                    return Merged(0, None)  # nothing to update in a table nobody wrote yet
                return Merged(create_with.height, _create(store, spec, create_with))
            before = table.version()
            changed = merge(table)
            version = table.version()
            return Merged(changed, version if version != before else None)
        except (CommitFailedError, DeltaError) as exc:
            lost_race = isinstance(exc, CommitFailedError) or (table is None and open_table(store, spec) is not None)
            if not lost_race:
                raise
            delay = min(_MAX_BACKOFF_S, _BACKOFF_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.debug("%s into %s lost to a concurrent commit (attempt %d): %s", what, spec.name, attempt, exc)
            time.sleep(delay)
    raise MergeConflictError(
        f"{what} into the Delta table {spec.name} at {store.table_uri(spec.name)}: concurrent writers won "
        f"{ATTEMPTS} times in a row"
    )


def _create(store: ObjectStore, spec: TableSpec, rows: pl.DataFrame) -> int:
    from deltalake import WriterProperties, write_deltalake

    write_deltalake(
        store.table_uri(spec.name), rows.to_arrow(), mode="error", partition_by=list(spec.partition_by) or None,
        storage_options=store.storage_options(), writer_properties=WriterProperties(compression="ZSTD"),
        configuration=configuration(spec),
    )
    return 0
