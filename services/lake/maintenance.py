"""Lake maintenance: compact small files, vacuum unreferenced ones, checkpoint the log (`flywheel lake optimize`,
and `flywheel serve` on a schedule).

Writers commit small: capture once per flush, the annotation receiver once per webhook, so tables grow many
small files and readers pay a request per file. For every Delta table of the lake (each TableSpec declared in
`tables.py`, and every other folder holding a `_delta_log`, such as per-name tables made at run time):

- compact: delta-rs's optimize rewrites each partition's small files into few, in one commit. That commit's add
  and remove actions carry dataChange=false: the rows are the same, only their files changed. A reader that follows
  a table incrementally (the add actions of the commits after the last version it read, as the labeler follows
  the raw table) must skip actions with dataChange=false, or it reads those rows again. Optimize commits carry
  no application transactions, so writers' recorded versions (capture's Kafka offsets) are untouched.
- vacuum: deletes the files that no version within the retention references (what compaction replaced, once
  older than the retention) and files no commit ever named (a writer died between writing a file and committing
  it) once they are older than the retention. Time travel to a version within the retention keeps working. The
  retention never goes below RETENTION_FLOOR unless forced: below it a vacuum may delete a file that a writer has
  written and is about to commit, or one that a reader of an older version is reading. Counted in whole hours
  (rounded up); the lake's retention setting is the policy, a table's delta.deletedFileRetentionDuration is not
  consulted.
  Everything under a table's folder that no commit names is such a file: nothing but the table may live there.
- checkpoint: when the table changed since its last checkpoint, and log entries older than the table's
  delta.logRetentionDuration (30 days by default) are removed.

A table that keeps its whole history (delta.enableExpiredLogCleanup=false: the slice and export version tables,
whose every version is read by time travel, against the files its manifest lists) is not compacted and its log is
not cleaned up; being append-only, it has no replaced files, so vacuum only removes files no commit ever named.

Before all that, a run enforces the data retention (`policy`: how long raw events, dead letters and gold answers
are kept at all, services/lake/retention.py), and gives a table made by an older flywheel the table properties
it is created with now (its log then records statistics of non-personal columns only: TableSpec.stats).

A table that fails is reported and the others go on; the next run tries it again. A table idle since the last run
gets no new commit. Runs in one process never overlap (a second one is refused while the first runs).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.retention import Expired, RetentionPolicy, enforce
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import delta_tables
from flywheel_feedback.services.settings import retention_problem

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=7)
_DISCOVERY_DEPTH = 4  # how deep under the lake's root a table's folder may be (slices/<name>/<table> is 3)
_running = threading.Lock()


@dataclass(frozen=True)
class TableMaintenance:
    """What one table's maintenance did."""

    table: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    compacted: int  # files compaction replaced
    written: int  # files it wrote instead
    vacuumed: int  # files vacuum deleted
    checkpoint: int | None  # the version checkpointed (None: the last checkpoint was current)
    seconds: float
    keeps_history: bool = False  # not compacted, log not cleaned (delta.enableExpiredLogCleanup=false)
    error: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.table}: failed after {self.seconds:.1f}s: {self.error}"
        checkpoint = "" if self.checkpoint is None else f", checkpoint at v{self.checkpoint}"
        compacted = "keeps its whole history: not compacted" if self.keeps_history else (
            f"compacted {self.compacted} into {self.written}")
        return (
            f"{self.table}: v{self.version_before} -> v{self.version_after}, files {self.files_before} -> "
            f"{self.files_after} ({compacted}), vacuumed {self.vacuumed}{checkpoint} in {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class LakeMaintenance:
    tables: list[TableMaintenance] = field(default_factory=list)
    expired: list[Expired] = field(default_factory=list)  # what the data retention deleted first

    @property
    def failed(self) -> list[TableMaintenance | Expired]:
        found: list[TableMaintenance | Expired] = [e for e in self.expired if e.error is not None]
        return found + [t for t in self.tables if t.error is not None]

    def summary(self) -> str:
        ok = [t for t in self.tables if t.error is None]
        before, after = sum(t.files_before for t in ok), sum(t.files_after for t in ok)
        vacuumed = sum(t.vacuumed for t in ok)
        expired = "".join(f", {e.rows} expired from {e.table}" for e in self.expired if e.error is None and e.rows)
        return (f"{len(self.tables)} tables: files {before} -> {after}, vacuumed {vacuumed}{expired}; "
                f"{len(self.failed)} failed")


class MaintenanceRunningError(FlywheelError):
    """Another maintenance run of this process has not finished."""


def lake_tables(store: ObjectStore) -> list[str]:
    """The names of every Delta table the lake holds: the declared ones that exist, and every other folder with a
    `_delta_log` (up to a few levels deep; partition folders and a table's own folders are not searched), which
    covers the tables made per name at run time (`slices/<name>`)."""
    from deltalake import DeltaTable

    found = set(discover_tables(store))
    options = store.storage_options()
    declared = {
        spec.name for spec in delta_tables()
        if "<" not in spec.name and spec.name not in found
        and DeltaTable.is_deltatable(store.table_uri(spec.name), storage_options=options)
    }
    return sorted(found | declared)


def discover_tables(store: ObjectStore, *, max_depth: int = _DISCOVERY_DEPTH) -> list[str]:
    found: list[str] = []

    def walk(prefix: str, depth: int) -> None:
        folders = _folders(store, prefix)
        if prefix and "_delta_log" in folders:
            found.append(prefix.rstrip("/"))
            return  # a table's other folders are its partitions
        if depth >= max_depth:
            return
        for name in folders:
            if not name.startswith(("_", ".")) and "=" not in name:
                walk(f"{prefix}{name}/", depth + 1)

    walk("", 0)
    return sorted(found)


def _folders(store: ObjectStore, prefix: str) -> list[str]:
    """The folder names directly under `prefix` (one listing call; S3 lists with a delimiter)."""
    if isinstance(store, LocalStore):
        base = store.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if isinstance(store, S3Store):
        key = f"{store.prefix}/{prefix}" if store.prefix else prefix
        names: list[str] = []
        for page in store.client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=key, Delimiter="/"
        ):
            names.extend(p["Prefix"][len(key):].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)
    return sorted({k[len(prefix):].split("/", 1)[0] for k in store.list(prefix) if "/" in k[len(prefix):]})


def optimize_lake(
    store: ObjectStore,
    *,
    retention: timedelta = DEFAULT_RETENTION,
    force: bool = False,
    tables: Sequence[str] | None = None,
    on_table: Callable[[TableMaintenance], None] | None = None,
    policy: RetentionPolicy | None = None,
    on_expired: Callable[[Expired], None] | None = None,
    now: datetime | None = None,
) -> LakeMaintenance:
    """Enforce the data retention (`policy`, as of `now`), then compact, vacuum and checkpoint every table of the
    lake (or the `tables` named), one after another."""
    problem = retention_problem(retention, force=force)
    if problem is not None:
        raise FlywheelError(problem)
    if not _running.acquire(blocking=False):
        raise MaintenanceRunningError("lake maintenance is already running in this process")
    try:
        named = None if tables is None else set(tables)
        expired = [] if policy is None else enforce(store, policy, tables=named, now=now)
        for item in expired:
            (log.warning if item.error else log.info)("%s", item.summary())
            if on_expired is not None:
                on_expired(item)
        names = lake_tables(store) if tables is None else list(tables)
        reports: list[TableMaintenance] = []
        for name in names:
            report = optimize_table(store, name, retention=retention, force=force)
            (log.warning if report.error else log.info)("%s", report.summary())
            if on_table is not None:
                on_table(report)
            reports.append(report)
        return LakeMaintenance(reports, expired)
    finally:
        _running.release()


def optimize_table(
    store: ObjectStore, name: str, *, retention: timedelta = DEFAULT_RETENTION, force: bool = False
) -> TableMaintenance:
    """One table's compaction, vacuum and checkpoint; a failure is reported in the result, not raised."""
    from deltalake import CommitProperties, DeltaTable

    problem = retention_problem(retention, force=force)
    if problem is not None:
        raise FlywheelError(problem)
    started = time.perf_counter()
    uri, options = store.table_uri(name), store.storage_options()
    version_before = files_before = -1
    try:
        table = DeltaTable(uri, storage_options=options)
        version_before, files_before = table.version(), len(table.file_uris())
        keeps_history = table.metadata().configuration.get("delta.enableExpiredLogCleanup", "").lower() == "false"
        declared = _declared().get(name)
        if declared is not None and not keeps_history and delta.ensure_configuration(store, declared):
            table = DeltaTable(uri, storage_options=options)  # compaction's files: statistics of `stats` only
        compacted: dict[str, object] = {}
        if not keeps_history:
            # a concurrent writer's commit (capture appending) is retried past: compaction changes no data
            compacted = table.optimize.compact(commit_properties=CommitProperties(max_commit_retries=20))
        vacuumed = table.vacuum(
            retention_hours=math.ceil(retention.total_seconds() / 3600), dry_run=False,
            enforce_retention_duration=False, full=True,
        )
        table = DeltaTable(uri, storage_options=options)
        checkpoint = None
        if _last_checkpoint(store, name) != table.version():
            table.create_checkpoint()
            checkpoint = table.version()
        if not keeps_history:  # (delta-rs's cleanup_metadata does not look at the table's setting itself)
            table.cleanup_metadata()
        return TableMaintenance(
            table=name, version_before=version_before, version_after=table.version(), files_before=files_before,
            files_after=len(table.file_uris()), compacted=_count(compacted, "numFilesRemoved"),
            written=_count(compacted, "numFilesAdded"), vacuumed=len(vacuumed), checkpoint=checkpoint,
            seconds=time.perf_counter() - started, keeps_history=keeps_history,
        )
    except Exception as e:  # one table's failure (a conflict, the store away) does not stop the others
        return TableMaintenance(
            table=name, version_before=version_before, version_after=version_before, files_before=files_before,
            files_after=files_before, compacted=0, written=0, vacuumed=0, checkpoint=None,
            seconds=time.perf_counter() - started, error=f"{type(e).__name__}: {e}",
        )


def _declared() -> dict[str, delta.TableSpec]:
    """The tables declared with a fixed name (not the per-name families), by name."""
    return {spec.name: spec for spec in delta_tables() if "<" not in spec.name}


def _count(metrics: dict[str, object], key: str) -> int:
    value = metrics.get(key, 0)
    return value if isinstance(value, int) else 0


def _last_checkpoint(store: ObjectStore, name: str) -> int | None:
    key = f"{name}/_delta_log/_last_checkpoint"
    if not store.exists(key):
        return None
    version = json.loads(store.get(key)).get("version")
    return version if isinstance(version, int) else None
