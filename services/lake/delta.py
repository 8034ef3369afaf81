"""Delta Lake tables of the lake (delta-rs through the `deltalake` package), on local disk or S3.

A table is a folder (or S3 prefix) under the lake's root, declared once in `services/lake/tables.py`. Writes are
Delta commits: atomic, ordered, and able to carry application transactions, the (app id, version) pairs that
make a writer exactly-once (capture stores its Kafka offsets this way, in the same commit as the rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    from deltalake import DeltaTable


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
    """One commit adding `frame`'s rows, with the writers' versions (`transactions`) in the same commit."""
    from deltalake import CommitProperties, Transaction, WriterProperties, write_deltalake

    txns = [Transaction(app_id=app_id, version=v) for app_id, v in (transactions or {}).items()]
    write_deltalake(
        store.table_uri(spec.name),
        frame.select(spec.schema.names()).cast(spec.schema).to_arrow(),
        mode="append",
        partition_by=list(spec.partition_by) or None,
        storage_options=store.storage_options(),
        writer_properties=WriterProperties(compression="ZSTD", compression_level=compression_level),
        commit_properties=CommitProperties(app_transactions=txns, max_commit_retries=50),
    )


def scan(store: ObjectStore, spec: TableSpec, *, version: int | None = None) -> pl.LazyFrame:
    """The table's rows (an empty frame of its schema while it does not exist)."""
    table = open_table(store, spec, version=version)
    if table is None:
        return pl.LazyFrame(schema=spec.schema)
    return pl.scan_delta(table)
