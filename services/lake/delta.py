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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote

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
    # the only columns whose min and max the log records per file, so readers can skip files: our own writer's,
    # and delta-rs's through the table property delta.dataSkippingStatsColumns (`configuration`). Never a column
    # holding personal data (ids, free text): the log outlives the rows, so an erased value would stay in it
    stats: tuple[str, ...] = ()


STATS_COLUMNS: Final = "delta.dataSkippingStatsColumns"
INDEXED_COLUMNS: Final = "delta.dataSkippingNumIndexedCols"
# set when a table made before its stats were limited was migrated: log entries before this version may hold
# the min and max of any column (services/privacy/erase.py cleans them up)
STATS_LIMITED_AT: Final = "flywheel.statsLimitedAt"


def configuration(spec: TableSpec) -> dict[str, str]:
    """The table properties a table is created with: the log records statistics of `spec.stats` only."""
    if spec.stats:
        return {STATS_COLUMNS: ",".join(spec.stats)}
    return {INDEXED_COLUMNS: "0"}


def ensure_configuration(store: ObjectStore, spec: TableSpec, *, extra: Mapping[str, str] | None = None) -> bool:
    """Give an existing table the properties it is created with today (a table made by an older flywheel records
    statistics of every column); returns whether it had to. The commit marks from which version on the log is
    clean (STATS_LIMITED_AT)."""
    table = open_table(store, spec)
    if table is None:
        return False
    wanted = {**configuration(spec), **(extra or {})}
    have = table.metadata().configuration
    if all(have.get(k) == v for k, v in wanted.items()):
        return False
    if any(have.get(k) != v for k, v in configuration(spec).items()) and STATS_LIMITED_AT not in have:
        wanted[STATS_LIMITED_AT] = str(table.version() + 1)
    table.alter.set_table_properties(wanted, raise_if_not_exists=False)
    log.info("%s: table properties set to %s", spec.name, wanted)
    return True


def open_table(store: ObjectStore, spec: TableSpec, *, version: int | None = None) -> DeltaTable | None:
    """The table, or None while nothing has been written to it."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    # Not DeltaTable.is_deltatable: it holds the GIL while its requests retry, so an unreachable S3 froze every
    # thread of the process (serve's event loop, its health answers, its shutdown) for seconds at a time.
    try:
        return DeltaTable(store.table_uri(spec.name), version=version, storage_options=store.storage_options())
    except TableNotFoundError:
        return None


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
    actions = write_files(store, spec, frame, compression_level=compression_level)
    commit(store, spec, actions, mode="append", transactions=transactions)


def write_files(
    store: ObjectStore, spec: TableSpec, frame: pl.DataFrame, *, compression_level: int = 1
) -> list[AddAction]:
    """Write `frame` as data files of the table (one per partition) that no commit names yet."""
    frame = conform(frame, spec)
    return [_write_file(store, spec, part, compression_level) for part in _partitions(frame, spec.partition_by)]


def commit(
    store: ObjectStore,
    spec: TableSpec,
    actions: Sequence[AddAction],
    *,
    mode: Literal["append", "overwrite"],
    transactions: Mapping[str, int] | None = None,
) -> None:
    """One commit naming the files `write_files` wrote (an overwrite also removes every file there was)."""
    from deltalake import CommitProperties, Transaction
    from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

    txns = [Transaction(app_id=app_id, version=v) for app_id, v in (transactions or {}).items()]
    properties = CommitProperties(app_transactions=txns, max_commit_retries=50)
    table = open_table(store, spec)
    if table is None:
        create_table_with_add_actions(
            store.table_uri(spec.name), _delta_schema(spec), list(actions), mode=mode,
            partition_by=list(spec.partition_by) or None, storage_options=store.storage_options(),
            commit_properties=properties, configuration=configuration(spec),
        )
    else:
        table.create_write_transaction(
            list[AddAction | RemoveAction](actions), mode=mode, schema=table.schema(),
            partition_by=list(spec.partition_by) or None, commit_properties=properties,
        )


def conform(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """`frame` with the table's columns in order and types; columns it lacks are null."""
    return frame.select(
        pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c) for c, t in spec.schema.items()
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
    return AddAction(path, len(data), values, int(time.time() * 1000), True, json.dumps(_file_stats(rows, spec)))


def _file_stats(rows: pl.DataFrame, spec: TableSpec) -> dict[str, object]:
    stats: dict[str, object] = {"numRecords": rows.height}
    if not spec.stats or not rows.height:
        return stats
    bounds = rows.select(
        *[pl.col(c).min().alias(f"min:{c}") for c in spec.stats],
        *[pl.col(c).max().alias(f"max:{c}") for c in spec.stats],
        *[pl.col(c).null_count().alias(f"nulls:{c}") for c in spec.stats],
    ).row(0, named=True)
    stats["minValues"] = {c: _stat_value(bounds[f"min:{c}"], up=False) for c in spec.stats}
    stats["maxValues"] = {c: _stat_value(bounds[f"max:{c}"], up=True) for c in spec.stats}
    stats["nullCount"] = {c: bounds[f"nulls:{c}"] for c in spec.stats}
    return stats


def _stat_value(value: object, *, up: bool) -> object:
    """A statistic as the Delta log writes it; timestamps have millisecond precision there, so a maximum is
    rounded up (a file's range must contain its rows)."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        millis = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if up and millis < value:
            millis += timedelta(milliseconds=1)
        return millis.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


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
        frame = conform(frame, spec)
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
        configuration=configuration(spec),
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


def added_files(store: ObjectStore, spec: TableSpec, *, after: int, upto: int) -> list[str] | None:
    """The data files that the commits after version `after`, up to `upto`, added as new data, oldest first
    (compaction's rewrites are not new data: they carry dataChange=false). A file a later commit of the range
    removed as a data change (a delete: retention, an erasure) is left out: what it held that is still there is
    in the files that commit added. None when one of those commits is no longer in the log (cleaned up by
    retention): the caller must read the table instead."""
    paths: dict[str, None] = {}
    for version in range(after + 1, upto + 1):
        key = f"{spec.name}/_delta_log/{version:020d}.json"
        if not store.exists(key):
            return None
        for line in store.get(key).splitlines():
            action = json.loads(line) if line.strip() else {}
            add, remove = action.get("add"), action.get("remove")
            if add is not None and add.get("dataChange", True):
                paths[unquote(add["path"])] = None
            elif remove is not None and remove.get("dataChange", True):
                paths.pop(unquote(remove["path"]), None)
    return list(paths)


def file_index(store: ObjectStore, spec: TableSpec, *, version: int | None = None) -> pl.DataFrame:
    """One row per data file of the table's version: path, rows, partition values (`partition.<col>`) and the
    recorded statistics (`min.<col>`, `max.<col>`)."""
    table = open_table(store, spec, version=version)
    if table is None:
        return pl.DataFrame(schema={"path": pl.String, "num_records": pl.Int64})
    index = pl.DataFrame(table.get_add_actions(flatten=True))
    return index.with_columns(pl.col("path").map_elements(unquote, return_dtype=pl.String))


def read_files(
    store: ObjectStore, spec: TableSpec, paths: Sequence[str], *, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """The rows of some of the table's data files (what a reader picked from `added_files` or `file_index`),
    with the partition columns restored from the paths, in the order of `paths`."""
    wanted = list(spec.schema.names() if columns is None else columns)
    stored = [c for c in wanted if c not in spec.partition_by]
    frames: list[pl.DataFrame] = []
    for path in paths:
        key = f"{spec.name}/{path}"
        local = store.local_path(key)
        source: Path | io.BytesIO = local if local is not None else io.BytesIO(store.get(key))
        frame = pl.read_parquet(source, columns=stored)
        values = _partition_values(path)
        frame = frame.with_columns(
            _partition_column(values.get(c), spec.schema[c]).alias(c) for c in wanted if c in spec.partition_by
        )
        frames.append(frame.select(wanted))
    if not frames:
        return pl.DataFrame(schema={c: spec.schema[c] for c in wanted})
    return pl.concat(frames, how="vertical_relaxed").cast({c: spec.schema[c] for c in wanted})


def _partition_column(text: str | None, dtype: pl.DataType) -> pl.Expr:
    """A partition value as the column's type (Delta writes them as text in paths)."""
    value = pl.lit(text, dtype=pl.String)
    if text is None:
        return pl.lit(None, dtype=dtype)
    if isinstance(dtype, pl.Date):
        return value.str.to_date("%Y-%m-%d")
    return value.cast(dtype)


def _partition_values(path: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in path.split("/")[:-1]:
        name, _, value = part.partition("=")
        value = unquote(value)
        values[name] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return values


def merge(
    store: ObjectStore,
    spec: TableSpec,
    frame: pl.DataFrame,
    *,
    transactions: Mapping[str, int] | None = None,
) -> None:
    """Upsert `frame` by the table's keys in one commit (MERGE: update the rows whose keys match, insert the
    rest), with the writers' versions in the same commit. Partition columns join the match, so only the
    partitions the rows belong to are read and rewritten."""
    from deltalake import CommitProperties, Transaction

    if not spec.keys:
        raise ValueError(f"table {spec.name} declares no keys to merge on")
    frame = conform(frame, spec)
    txns = [Transaction(app_id=app_id, version=v) for app_id, v in (transactions or {}).items()]
    table = open_table(store, spec)
    if table is None:
        append(store, spec, frame, transactions=transactions)
        return
    table = add_missing_columns(store, spec, table)
    match = [f"t.{c} = s.{c}" for c in (*spec.partition_by, *spec.keys)]
    for column in spec.partition_by:  # literal values let delta-rs skip every other partition
        values = frame.get_column(column).drop_nulls().unique().sort().to_list()
        if values and frame.get_column(column).null_count() == 0:
            match.append(f"t.{column} IN ({', '.join(_sql_literal(v) for v in values)})")
    (
        table.merge(
            frame.to_arrow(), predicate=" AND ".join(match), source_alias="s", target_alias="t",
            commit_properties=CommitProperties(app_transactions=txns),
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def add_missing_columns(store: ObjectStore, spec: TableSpec, table: DeltaTable) -> DeltaTable:
    """The table with the columns `spec` declares and it lacks added (nullable: older rows read as null), for
    a table an older flywheel made; the table as it is when it lacks none."""
    from deltalake import Schema

    have = {f.name for f in table.schema().fields}
    missing = {c: t for c, t in spec.schema.items() if c not in have}
    if not missing:
        return table
    table.alter.add_columns(Schema.from_arrow(pl.DataFrame(schema=missing).to_arrow().schema).fields)
    log.info("%s: added the columns %s", spec.name, sorted(missing))
    reloaded = open_table(store, spec)
    if reloaded is None:
        raise FileNotFoundError(f"table {spec.name} is gone after its columns were added")
    return reloaded


def _sql_literal(value: object) -> str:
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def overwrite(
    store: ObjectStore, spec: TableSpec, frame: pl.DataFrame, *, transactions: Mapping[str, int] | None = None
) -> None:
    """Replace the table's rows with `frame` in one commit (for small tables that are recomputed whole); older
    versions stay readable until vacuumed."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    frame = conform(frame, spec)
    txns = [Transaction(app_id=app_id, version=v) for app_id, v in (transactions or {}).items()]
    write_deltalake(
        store.table_uri(spec.name), frame.to_arrow(), mode="overwrite", schema_mode="overwrite",
        partition_by=list(spec.partition_by) or None, storage_options=store.storage_options(),
        commit_properties=CommitProperties(app_transactions=txns), configuration=configuration(spec),
    )
