"""Delta Lake tables of the lake (delta-rs through the `deltalake` package), on local disk or S3.

A table is a folder (or S3 prefix) under the lake's root, declared once in `services/lake/tables.py`. Writes are
Delta commits: atomic, ordered, and able to carry application transactions, the (app id, version) pairs that
make a writer exactly-once (capture stores its Kafka offsets this way, in the same commit as the rows).
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from deltalake import DeltaTable
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import AddAction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table's name (its folder under the lake's root), columns, partition columns and key."""

    name: str
    schema: pl.Schema
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


def open_table(store: ObjectStore, spec: TableSpec, *, version: int | None = None) -> DeltaTable | None:
    """The table, or None while nothing has been written to it."""
    from deltalake import DeltaTable

    uri = store.table_uri(spec.name)
    if not DeltaTable.is_deltatable(uri, storage_options=store.storage_options()):
        return None
    return DeltaTable(uri, version=version, storage_options=store.storage_options())


def table_version(store: ObjectStore, spec: TableSpec) -> int | None:
    table = open_table(store, spec)
    return None if table is None else table.version()


def transaction_versions(store: ObjectStore, spec: TableSpec, app_ids: Sequence[str]) -> dict[str, int]:
    """The last version each writer committed (absent: it never committed)."""
    table = open_table(store, spec)
    if table is None:
        return {}
    found = {app_id: table.transaction_version(app_id) for app_id in app_ids}
    return {app_id: v for app_id, v in found.items() if v is not None}


def append(
    store: ObjectStore,
    spec: TableSpec,
    frame: pl.DataFrame,
    *,
    transactions: Mapping[str, int] | None = None,
    compression_level: int = 1,
) -> None:
    """One commit adding `frame`'s rows, with the writers' versions (`transactions`) in the same commit.

    The data files are written by polars through the store (where: local or S3; how: Parquet), then the
    commit names them: a file no commit names (a writer died in between) is invisible, and vacuum removes it.
    delta-rs's own writer does the same work at about twice the cost and memory (bench/capture.py)."""
    from deltalake import CommitProperties, Transaction
    from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

    frame = frame.select(spec.schema.names()).cast(spec.schema)
    actions: list[AddAction] = [
        _write_file(store, spec, part, compression_level) for part in _partitions(frame, spec.partition_by)
    ]
    txns = [Transaction(app_id=app_id, version=v) for app_id, v in (transactions or {}).items()]
    commit = CommitProperties(app_transactions=txns, max_commit_retries=50)
    table = open_table(store, spec)
    if table is None:
        create_table_with_add_actions(
            store.table_uri(spec.name), _delta_schema(spec), actions, mode="append",
            partition_by=list(spec.partition_by) or None, storage_options=store.storage_options(),
            commit_properties=commit,
        )
    else:
        table.create_write_transaction(
            list[AddAction | RemoveAction](actions), mode="append", schema=table.schema(),
            partition_by=list(spec.partition_by) or None, commit_properties=commit,
        )


def _partitions(frame: pl.DataFrame, columns: Sequence[str]) -> list[tuple[dict[str, str | None], pl.DataFrame]]:
    if not columns:
        return [({}, frame)]
    if all(frame.get_column(c).n_unique() == 1 for c in columns):  # the usual flush: no split, no copy
        values = {c: frame.get_column(c)[0] for c in columns}
        return [({c: _partition_text(v) for c, v in values.items()}, frame.drop(columns))]
    return [
        ({c: _partition_text(v) for c, v in zip(columns, key, strict=True)}, part.drop(columns))
        for key, part in frame.group_by(list(columns), maintain_order=True)
    ]


def _partition_text(value: object) -> str | None:
    return None if value is None else str(value)


def _write_file(
    store: ObjectStore, spec: TableSpec, part: tuple[dict[str, str | None], pl.DataFrame], compression_level: int
) -> AddAction:
    from deltalake.transaction import AddAction

    values, rows = part
    folder = "/".join(f"{c}={'__HIVE_DEFAULT_PARTITION__' if v is None else v}" for c, v in values.items())
    path = f"{folder}/part-{uuid.uuid4().hex}.zstd.parquet" if folder else f"part-{uuid.uuid4().hex}.zstd.parquet"
    buf = io.BytesIO()
    rows.write_parquet(buf, compression="zstd", compression_level=compression_level)
    data = buf.getvalue()
    store.put(f"{spec.name}/{path}", data)
    stats = {"numRecords": rows.height}
    return AddAction(path, len(data), values, int(time.time() * 1000), True, json.dumps(stats))


def _delta_schema(spec: TableSpec) -> DeltaSchema:
    from deltalake import Schema

    return Schema.from_arrow(pl.DataFrame(schema=spec.schema).to_arrow().schema)


def append_once(
    store: ObjectStore,
    spec: TableSpec,
    app_ids: Sequence[str],
    rows_for: Callable[[Mapping[str, int]], tuple[pl.DataFrame, Mapping[str, int]] | None],
    *,
    compression_level: int = 1,
    attempts: int = 10,
) -> int:
    """Append what the writers' committed versions do not cover yet, exactly once even with concurrent writers
    of the same app ids; returns the rows added.

    Each attempt reads the versions of `app_ids` from one snapshot of the table, lets `rows_for` drop what they
    cover (None: nothing left to write), and commits against that same snapshot. delta-rs checks every commit
    that landed after the snapshot: one carrying one of our app ids fails ours (CommitFailedError, "Concurrent
    transaction failed"), while commits of other app ids are retried past. A failed attempt reads the table
    again; its data files stay unnamed (invisible, and vacuum removes them). Reading the versions from another
    snapshot than the one committed against would open a window in which two writers both commit a range."""
    from deltalake import CommitProperties, Transaction
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import AddAction, RemoveAction

    failure: CommitFailedError | None = None
    for attempt in range(1, attempts + 1):
        table = open_table(store, spec) or _create_empty(store, spec)
        found = {app_id: table.transaction_version(app_id) for app_id in app_ids}
        built = rows_for({app_id: v for app_id, v in found.items() if v is not None})
        if built is None:
            return 0
        frame, transactions = built
        frame = frame.select(spec.schema.names()).cast(spec.schema)
        actions = [_write_file(store, spec, part, compression_level) for part in _partitions(frame, spec.partition_by)]
        txns = [Transaction(app_id=app_id, version=v) for app_id, v in transactions.items()]
        try:
            table.create_write_transaction(
                list[AddAction | RemoveAction](actions), mode="append", schema=table.schema(),
                partition_by=list(spec.partition_by) or None,
                commit_properties=CommitProperties(app_transactions=txns, max_commit_retries=50),
            )
            return frame.height
        except CommitFailedError as e:
            failure = e
            log.info("commit to %s lost to a concurrent one (attempt %d of %d), reading it again: %s",
                     spec.name, attempt, attempts, e)
    assert failure is not None
    raise failure


def _create_empty(store: ObjectStore, spec: TableSpec) -> DeltaTable:
    """Create the table with no rows (unless it exists by now). A table created with its first rows would not be
    safe for `append_once`: when two writers create it at once, delta-rs commits the loser's actions after the
    winner's without checking them. A lost race here commits the same schema again, which changes nothing."""
    from deltalake import DeltaTable

    DeltaTable.create(
        store.table_uri(spec.name), _delta_schema(spec), mode="ignore",
        partition_by=list(spec.partition_by) or None, storage_options=store.storage_options(),
    )
    table = open_table(store, spec)
    if table is None:
        raise FileNotFoundError(f"table {spec.name} is not there after it was created")
    return table


def scan(store: ObjectStore, spec: TableSpec, *, version: int | None = None) -> pl.LazyFrame:
    """The table's rows (an empty frame of its schema while it does not exist)."""
    table = open_table(store, spec, version=version)
    if table is None:
        return pl.LazyFrame(schema=spec.schema)
    return pl.scan_delta(table)
