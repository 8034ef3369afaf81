"""Immutable versions as Delta tables: one per slice (`slices/<name>`) and per export kind (`exports/<kind>`),
declared in `services/lake/tables.py` and partitioned by the version number.

Publishing version k is one Delta commit: it adds the files of partition version=k (for a slice, its rows and
the items it retired) and carries the manifest in its custom metadata (`flywheel.manifest`). The commit is made
against the table version in which the publisher saw that k was absent, with no retries (delta-rs
`max_commit_retries=0`): delta-rs then writes exactly the next log entry, with a put-if-absent (a hard link on
local disk, `If-None-Match: *` on S3), or fails. So of two publishers of k, one commit lands; the other reloads,
finds k and raises VersionExistsError. If the commit that got there first was something else (an announcement
mark), it tries again. (delta-rs's default retries would not do: appends never conflict, so both would land;
only a shared app id conflicts; and a writer that loses the race to create a table skips the conflict check.)
Files written before a crash, without their commit, are in no version: invisible, and the next attempt writes
its own.

Reading version k finds its commit in the table's history, opens the table at that Delta version (time travel:
later commits cannot change what k returns), takes the files of partition k from the log, checks they are those
the manifest lists, and verifies each file's SHA-256 and size. `content_hash` is the rows file's SHA-256. A
version whose files changed after it was published (or a truncated download) is an error, not data. Any Delta
reader gets the same rows: `pl.scan_delta(uri, version=<table version>).filter(pl.col("version") == k)`.

The one exception to immutability is an erasure (`services/slices/erasure.py`): a person's rows must leave every
version, old ones included. It rewrites the files of the versions holding them in one commit whose metadata
(`flywheel.erasure`) lists, per version, the new files with their hashes and the rows each lost (counts and an
erasure id, no ids of people or interactions). Readers apply it (`amended`): such a version is read at the
erasure's Delta version, against the files and content hash the erasure recorded, and its manifest lists the
erasures it went through (`erasures`) and keeps the Delta version it was published at (`table.published_version`).
Time travel to before the erasure no longer works (its files are vacuumed): `table.version` names where to read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from flywheel_feedback.labeling.records import SLICE_SCHEMA
from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.delta import TableSpec
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    EXPORT_VERSIONS,
    SLICE_RETIRED_SCHEMA,
    VERSION_TABLE_CONFIG,
    slice_table,
)
from flywheel_feedback.services.slices.definitions import NAME_PATTERN

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import AddAction, RemoveAction

MANIFEST: Final = "manifest.json"  # the name `pull` gives it on disk
DATA: Final = "data.parquet"  # the version's rows
RETIRED: Final = "retired.parquet"  # a slice version's retired items
FORMAT: Final = 2
SLICES_PREFIX: Final = "slices"
EXPORTS_PREFIX: Final = "exports"
MANIFEST_METADATA: Final = "flywheel.manifest"  # the commit's custom-metadata key holding the manifest
ERASURE_METADATA: Final = "flywheel.erasure"  # an erasure's commit: the versions it rewrote, their new files
PUBLISHED_TXN: Final = "flywheel.published"  # app id: its version is the slice (export) version published
ATTEMPTS: Final = 20  # commits lost to other kinds of commits (announcement marks) before giving up
_TABLE_LOG = re.compile(r"^(?P<root>[^/]+/[^/]+)/_delta_log/")


class VersionExistsError(FlywheelError, RuntimeError):
    """Publishing over a published version."""


class IntegrityError(FlywheelError, RuntimeError):
    """A version's file does not match its manifest."""


class VersionNotFoundError(FlywheelError, LookupError):
    """No such version (the message lists the ones there are)."""


class CommitLostError(RuntimeError):
    """Another commit landed on the table since it was read (the caller reloads and decides again)."""


@dataclass(frozen=True)
class Published:
    """One published version: its manifest, the Delta version of its commit, and its files as that commit's
    snapshot of the table holds them (file name -> store key)."""

    root: str
    version: int
    table_version: int
    manifest: dict[str, Any]
    files: dict[str, str]


def slice_root(name: str) -> str:
    return f"{SLICES_PREFIX}/{name}"


def export_root(kind: str) -> str:
    return f"{EXPORTS_PREFIX}/{kind}"


def table_of(root: str) -> TableSpec:
    """The versions table of a root: `slices/<name>` or `exports/<kind>`."""
    prefix, _, name = root.partition("/")
    if prefix == SLICES_PREFIX and re.fullmatch(NAME_PATTERN, name):
        return slice_table(name)
    if prefix == EXPORTS_PREFIX and name in EXPORT_VERSIONS:
        return EXPORT_VERSIONS[name]
    raise VersionNotFoundError(f"{root!r} is neither a slice (slices/<name>) nor an export "
                               f"({', '.join(export_root(k) for k in EXPORT_VERSIONS)})")


def _label(root: str) -> str:
    prefix, _, name = root.partition("/")
    return f"slice {name}" if prefix == SLICES_PREFIX else f"export {name}"


def part_schemas(spec: TableSpec) -> dict[str, pl.Schema]:
    """What each file of a version holds: name -> columns."""
    if "role" in spec.partition_by:
        return {DATA: SLICE_SCHEMA, RETIRED: SLICE_RETIRED_SCHEMA}
    return {DATA: pl.Schema({c: t for c, t in spec.schema.items() if c not in spec.partition_by})}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def published(store: ObjectStore, root: str) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every published version of `root`: version -> (Delta version of its commit, manifest), from the history."""
    table = delta.open_table(store, table_of(root))
    return {} if table is None else _from_history(table)


def _from_history(table: DeltaTable) -> dict[int, tuple[int, dict[str, Any]]]:
    found: dict[int, tuple[int, dict[str, Any]]] = {}
    erasures: list[tuple[int, dict[str, Any]]] = []
    for commit in table.history():  # newest first: were a version committed twice, the first commit wins
        manifest = commit.get(MANIFEST_METADATA)
        if isinstance(manifest, dict) and isinstance(manifest.get("version"), int):
            found[manifest["version"]] = (int(commit["version"]), manifest)
        erasure = commit.get(ERASURE_METADATA)
        if isinstance(erasure, dict):
            erasures.append((int(commit["version"]), erasure))
    for at, erasure in sorted(erasures, key=lambda e: e[0]):  # oldest first: each amends what the last left
        for key, change in (erasure.get("versions") or {}).items():
            version = int(key)
            if version in found and found[version][0] < at:
                found[version] = (at, amended(found[version][1], change, erasure, at=at))
    return dict(sorted(found.items()))


def amended(manifest: dict[str, Any], change: Mapping[str, Any], erasure: Mapping[str, Any], *, at: int
            ) -> dict[str, Any]:
    """A version's manifest after an erasure rewrote its files (the commit at Delta version `at`): the files and
    content hash the erasure recorded, the rows left, the Delta version to read it at, and the erasure listed."""
    files = {**manifest.get("files", {}), **change.get("files", {})}
    table = dict(manifest.get("table", {}))
    table.setdefault("published_version", table.get("version"))
    table["version"] = at
    rows = files.get(DATA, {}).get("rows", manifest.get("rows"))
    return {
        **manifest,
        "files": files,
        "content_hash": f"sha256:{files[DATA]['sha256']}",
        "rows": rows,
        "table": table,
        "erasures": [*manifest.get("erasures", []), {
            "id": erasure.get("id"), "at": erasure.get("at"), "table_version": at,
            "rows_removed": change.get("rows_removed", {}),
        }],
    }


def latest_published_at(store: ObjectStore, root: str) -> float | None:
    """When the latest version of `root` was published (Unix seconds, its commit's timestamp; an erasure's later
    rewrite does not count), or None when nothing is."""
    table = delta.open_table(store, table_of(root))
    if table is None:
        return None
    latest: tuple[int, float] | None = None
    for commit in table.history():  # newest first: of a version committed twice, the first commit wins
        manifest = commit.get(MANIFEST_METADATA)
        version = manifest.get("version") if isinstance(manifest, dict) else None
        if isinstance(version, int) and (latest is None or version >= latest[0]):
            latest = (version, int(commit["timestamp"]) / 1000)
    return None if latest is None else latest[1]


def list_versions(store: ObjectStore, root: str) -> list[int]:
    """Published versions under `root`, ascending."""
    return list(published(store, root))


def list_roots(store: ObjectStore, prefix: str) -> dict[str, list[int]]:
    """Every table under `prefix` (slices or exports) with its published versions."""
    roots = sorted({m.group("root") for k in store.list(f"{prefix}/") if (m := _TABLE_LOG.match(k))})
    found = {root: list_versions(store, root) for root in roots}
    return {root: versions for root, versions in found.items() if versions}


def latest_version(store: ObjectStore, root: str) -> int | None:
    versions = list_versions(store, root)
    return versions[-1] if versions else None


def resolve(store: ObjectStore, root: str, version: int | None) -> int:
    """`version`, checked to exist, or the latest one."""
    versions = list_versions(store, root)
    if version is None:
        if not versions:
            raise VersionNotFoundError(f"nothing published under {root} in {store.url}")
        return versions[-1]
    if version not in versions:
        raise VersionNotFoundError(f"{root} has no version {version} in {store.url}; published: {versions}")
    return version


def read_manifest(store: ObjectStore, root: str, version: int) -> dict[str, Any]:
    found = published(store, root)
    if version not in found:
        raise VersionNotFoundError(f"{root} has no version {version} in {store.url}; published: {list(found)}")
    return found[version][1]


def open_version(store: ObjectStore, root: str, version: int | None = None) -> Published:
    """A published version (the latest when `version` is None) as of its own commit: its manifest and files."""
    spec = table_of(root)
    found = published(store, root)
    if version is None and found:
        version = max(found)
    if version is None or version not in found:
        raise VersionNotFoundError(f"nothing published under {root} in {store.url}" if version is None else
                                   f"{root} has no version {version} in {store.url}; published: {list(found)}")
    table_version, manifest = found[version]
    table = delta.open_table(store, spec, version=table_version)
    assert table is not None  # its history named this version
    in_log = sorted(_partition_files(table, spec, version))
    listed = sorted((name, entry.get("key")) for name, entry in manifest.get("files", {}).items())
    if in_log != listed:
        raise IntegrityError(f"{root} v{version}: the table at Delta version {table_version} holds {in_log}, "
                             f"the manifest lists {listed}")
    return Published(root, version, table_version, manifest, dict(in_log))


def _partition_files(table: DeltaTable, spec: TableSpec, version: int) -> list[tuple[str, str]]:
    """(file name, store key) of every file of partition version=`version` in the table as loaded."""
    adds = pl.DataFrame(table.get_add_actions(flatten=True))
    if adds.is_empty():
        return []
    mine = adds.filter(pl.col("partition.version") == version)
    role = pl.col("partition.role") if "role" in spec.partition_by else pl.lit("data")
    return [(f"{r}.parquet", f"{spec.name}/{p}") for p, r in mine.select("path", role).iter_rows()]


def publish(
    store: ObjectStore, root: str, version: int, parts: Mapping[str, pl.DataFrame], manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Publish `parts` (file name -> rows; DATA required) as `version` of `root`, in one commit whose metadata is
    the manifest with the files' hashes added. Returns the manifest as committed. Raises VersionExistsError when
    the version is published already, also when another publisher committed it first."""
    spec = table_of(root)
    schemas = part_schemas(spec)
    if DATA not in parts or not set(parts) <= set(schemas):
        raise ValueError(f"expected {DATA} and optionally {sorted(set(schemas) - {DATA})}, got {sorted(parts)}")
    if version < 1:
        raise ValueError(f"expected a version >= 1, got {version}")
    _check_absent(store, spec, root, version)  # before writing files that would never be committed
    actions, listed = [], {}
    for name, frame in parts.items():
        action, entry = write_part(store, spec, version, name, frame, schemas[name])
        actions.append(action)
        listed[name] = entry
    body = {
        **_jsonable(dict(manifest)),
        "format": FORMAT,
        "version": version,
        "content_hash": f"sha256:{listed[DATA]['sha256']}",
        "files": listed,
    }
    for _ in range(ATTEMPTS):
        table = _check_absent(store, spec, root, version)
        table_version = 0 if table is None else table.version() + 1
        written = {**body, "table": {"name": spec.name, "version": table_version}}
        try:
            commit(store, spec, table, actions, metadata={MANIFEST_METADATA: written},
                   transaction=(PUBLISHED_TXN, version))
        except CommitLostError:
            continue  # reload: the next look says whether that commit was this version
        return written
    raise RuntimeError(f"{_label(root)} v{version}: {ATTEMPTS} commits to {spec.name} in {store.url} were all beaten "
                       "by other commits; try again")


def _check_absent(store: ObjectStore, spec: TableSpec, root: str, version: int) -> DeltaTable | None:
    """The table as it is now (None: not created yet), where `version` is not published (else raise)."""
    table = delta.open_table(store, spec)
    if table is not None:
        _check_columns(table, spec)
        table = delta.add_missing_columns(store, spec, table)
        done = _from_history(table)
        if version in done:
            raise VersionExistsError(
                f"{_label(root)} v{version} is already published in {store.url} (Delta version {done[version][0]} "
                f"of {spec.name}); versions are immutable")
        if _partition_files(table, spec, version):
            raise IntegrityError(f"{spec.name} in {store.url} holds files of version {version} that no publish "
                                 "committed (written outside flywheel); remove them before publishing it")
    return table


def write_part(
    store: ObjectStore, spec: TableSpec, version: int, name: str, frame: pl.DataFrame, schema: pl.Schema
) -> tuple[AddAction, dict[str, Any]]:
    from deltalake.transaction import AddAction

    if set(frame.columns) != set(schema.names()):
        raise ValueError(f"{spec.name} {name}: expected the columns {schema.names()}, got {frame.columns}")
    rows = frame.select(schema.names()).cast(schema).cast(_stored(spec, schema))
    data = parquet_bytes(rows)
    values = {"version": str(version)}
    if "role" in spec.partition_by:
        values["role"] = name.removesuffix(".parquet")
    folder = "/".join(f"{k}={v}" for k, v in values.items())
    path = f"{folder}/part-{uuid.uuid4().hex}.zstd.parquet"
    store.put(f"{spec.name}/{path}", data)
    action = AddAction(path, len(data), dict(values), int(time.time() * 1000), True,
                       json.dumps({"numRecords": rows.height}))
    return action, {"key": f"{spec.name}/{path}", "sha256": sha256(data), "bytes": len(data), "rows": rows.height}


def _stored(spec: TableSpec, schema: pl.Schema) -> pl.Schema:
    """How a file's columns are stored: as the table declares them (Delta's types)."""
    return pl.Schema({c: spec.schema[c] for c in schema.names()})


def _check_columns(table: DeltaTable, spec: TableSpec) -> None:
    """The table's columns must hold what this code writes: a column it lacks is added (older versions read it
    as null), a column only older versions wrote stays (null in newer ones), a column of another type cannot."""
    have = {f.name: str(f.type) for f in table.schema().fields}
    wanted = {f.name: str(f.type) for f in _delta_schema(spec).fields}
    clash = sorted(c for c in wanted.keys() & have.keys() if have[c] != wanted[c])
    if clash:
        raise ValueError(f"{spec.name} holds the columns {clash} as {[have[c] for c in clash]}; this code writes "
                         f"them as {[wanted[c] for c in clash]} (a layout an older flywheel published): move the "
                         "table aside to publish the new layout")


def commit(
    store: ObjectStore,
    spec: TableSpec,
    table: DeltaTable | None,
    actions: Sequence[AddAction | RemoveAction],
    *,
    metadata: dict[str, Any],
    transaction: tuple[str, int] | None,
) -> None:
    """One commit on `table` as it was read (creating the table when None), or CommitLostError when any other
    commit got there first: no retries, so nothing lands on a table the caller did not see."""
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.exceptions import CommitFailedError, DeltaError
    from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

    txns = [] if transaction is None else [Transaction(app_id=transaction[0], version=transaction[1])]
    properties = CommitProperties(custom_metadata=metadata, max_commit_retries=0, app_transactions=txns)
    uri = store.table_uri(spec.name)
    try:
        if table is None:
            adds = [a for a in actions if isinstance(a, AddAction)]
            create_table_with_add_actions(
                uri, _delta_schema(spec), adds, mode="error", partition_by=list(spec.partition_by),
                configuration=VERSION_TABLE_CONFIG, storage_options=store.storage_options(),
                commit_properties=properties,
            )
        else:
            table.create_write_transaction(
                list[AddAction | RemoveAction](actions), mode="append", schema=table.schema(),
                partition_by=list(spec.partition_by), commit_properties=properties,
            )
    except CommitFailedError as e:  # another commit took the version this one was to be
        raise CommitLostError(str(e)) from e
    except DeltaError as e:  # creating: another writer created the table first
        if table is None and DeltaTable.is_deltatable(uri, storage_options=store.storage_options()):
            raise CommitLostError(str(e)) from e
        raise


def _delta_schema(spec: TableSpec) -> DeltaSchema:
    from deltalake import Schema

    return Schema.from_arrow(pl.DataFrame(schema=spec.schema).to_arrow().schema)


def _jsonable(value: Any) -> Any:
    """JSON types only (what a commit's metadata may hold): text for dates, null for NaN and infinities."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def read_file(store: ObjectStore, version: Published, name: str, *, verify: bool = True) -> bytes:
    """A version's file, checked against the manifest's hash and size."""
    key = version.files.get(name)
    if key is None:
        raise VersionNotFoundError(f"{version.root} v{version.version} has no file {name!r}; it has "
                                   f"{sorted(version.files)}")
    path = store.local_path(key)
    data = path.read_bytes() if path is not None else store.get(key)
    if verify:
        entry = version.manifest["files"][name]
        digest = sha256(data)
        if digest != entry["sha256"] or len(data) != entry["bytes"]:
            raise IntegrityError(
                f"{key} in {store.url} does not match its manifest: sha256 {digest} ({len(data)} bytes), "
                f"expected {entry['sha256']} ({entry['bytes']} bytes)"
            )
    return data


def read_frame(
    store: ObjectStore, version: Published, name: str = DATA, *, verify: bool = True, columns: list[str] | None = None,
) -> pl.DataFrame:
    """A version's rows (or retired items), in the types they were published with."""
    frame = pl.read_parquet(io.BytesIO(read_file(store, version, name, verify=verify)), columns=columns)
    schema = part_schemas(table_of(version.root)).get(name, pl.Schema())
    return frame.cast({c: schema[c] for c in frame.columns if c in schema})


def verify_version(store: ObjectStore, root: str, version: int) -> list[str]:
    """Problems with a published version (empty: the log and every file match its manifest)."""
    try:
        found = open_version(store, root, version)
    except IntegrityError as e:
        return [str(e)]
    problems = []
    for name, key in found.files.items():
        if not store.exists(key):
            problems.append(f"{key} is missing from {store.url}")
            continue
        try:
            read_file(store, found, name, verify=True)
        except IntegrityError as e:
            problems.append(str(e))
    manifest = found.manifest
    if manifest.get("content_hash") != f"sha256:{manifest.get('files', {}).get(DATA, {}).get('sha256')}":
        problems.append(f"{root} v{version}: content_hash does not name the data file's hash")
    if manifest.get("table", {}).get("version") != found.table_version:
        problems.append(f"{root} v{version}: the manifest names Delta version {manifest.get('table')}, its commit is "
                        f"Delta version {found.table_version}")
    return problems
