"""Slice and export versions as Delta tables: of two concurrent publishers of one version exactly one wins (two
processes, on local disk and on the real S3 server), and a version reads as it was published whatever is
committed after it (time travel)."""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.labeling.conversations import MESSAGES
from flywheel_feedback.labeling.records import SLICE_SCHEMA
from flywheel_feedback.services.lake.store import ObjectStore, open_store
from flywheel_feedback.services.lake.tables import EXPORT_VERSIONS
from flywheel_feedback.services.slices import load_export, load_slice, versions
from flywheel_feedback.services.slices.announce import announced_version, mark_announced, unannounced
from flywheel_feedback.services.slices.versions import (
    DATA,
    CommitLostError,
    IntegrityError,
    VersionExistsError,
    export_root,
    list_versions,
    open_version,
    publish,
    published,
    read_file,
    sha256,
    slice_root,
    table_of,
    verify_version,
)

NAME = "raced"
SFT = pl.Schema({c: t for c, t in EXPORT_VERSIONS["sft"].schema.items() if c != "version"})


def slice_rows(tag: str, n: int = 5) -> pl.DataFrame:
    """`n` slice rows (SLICE_SCHEMA) whose ids and inputs name `tag`."""
    values: dict[str, Any] = {"interaction_id": [f"{tag}-{i}" for i in range(n)], "input": [f"from {tag}"] * n,
                              "annotators": list(range(n)), "added_in": [1] * n}
    return pl.DataFrame({c: values.get(c, [None] * n) for c in SLICE_SCHEMA.names()}, schema=SLICE_SCHEMA)


def sft_rows(tag: str, n: int = 4) -> pl.DataFrame:
    def column(t: pl.DataType) -> list[Any]:
        if t == pl.String:
            return [f"{tag}-{i}" for i in range(n)]
        if t == MESSAGES:
            return [[{"role": "user", "content": f"{tag}-{i}"}, {"role": "assistant", "content": "a"}]
                    for i in range(n)]
        return [0.9] * n

    return pl.DataFrame({c: column(t) for c, t in SFT.items()}, schema=SFT)


def publisher(url: str, options: dict[str, str], version: int, tag: str, barrier: Any, results: Any) -> None:
    """One publisher process: checks that `version` is absent, then waits for the other at the commit itself, so
    both commit on the same table version at once."""
    store = open_store(url, **options)
    real_commit = versions.commit
    commits_lost = []

    def commit_together(*args: Any, **kwargs: Any) -> None:
        barrier.wait(timeout=60)
        try:
            real_commit(*args, **kwargs)
        except CommitLostError:
            commits_lost.append(version)
            raise

    versions.commit = commit_together
    try:
        publish(store, slice_root(NAME), version, {DATA: slice_rows(f"{tag}-v{version}")}, {"publisher": tag})
        results.put((tag, "won", "", commits_lost))
    except VersionExistsError as e:
        results.put((tag, "lost", str(e), commits_lost))
    except BaseException as e:
        results.put((tag, "error", repr(e), commits_lost))


def race(url: str, options: dict[str, str], versions_to_race: range) -> None:
    context = multiprocessing.get_context("spawn")
    store = open_store(url, **options)
    for version in versions_to_race:
        barrier, results = context.Barrier(2), context.Queue()
        processes = [context.Process(target=publisher, args=(url, options, version, tag, barrier, results))
                     for tag in ("a", "b")]
        for process in processes:
            process.start()
        try:
            outcomes = sorted((results.get(timeout=120) for _ in processes), key=lambda o: o[1], reverse=True)
        except queue.Empty:
            pytest.fail(f"a publisher of v{version} did not finish")
        finally:
            for process in processes:
                process.join(timeout=60)
        print(f"\nv{version}: {outcomes}")
        (winner, won, _, _), (_, lost, message, lost_commits) = outcomes
        assert (won, lost) == ("won", "lost"), outcomes
        assert lost_commits == [version]  # both saw the version absent and committed: the loser's commit failed
        assert f"slice {NAME} v{version} is already published in {store.url}" in message
        assert "versions are immutable" in message
        # the table holds one commit of that version: the winner's rows
        commits = published(store, slice_root(NAME))
        assert sorted(commits) == list(range(1, version + 1))
        assert commits[version][1]["publisher"] == winner
        assert load_slice(NAME, version, lake=store).equals(slice_rows(f"{winner}-v{version}"))
        assert verify_version(store, slice_root(NAME), version) == []


def test_two_publishers_of_one_version_on_local_disk_exactly_one_wins(tmp_path: Path) -> None:
    race(str(tmp_path / "lake"), {}, range(1, 4))  # v1 creates the table, v2 and v3 append to it


@pytest.mark.s3
def test_two_publishers_of_one_version_on_s3_exactly_one_wins(s3_url: str, s3_options: dict[str, str]) -> None:
    race(s3_url, s3_options, range(1, 4))


def rogue_append(store: ObjectStore, root: str, version: int, frame: pl.DataFrame) -> None:
    """Rows added to a published version's partition by a plain Delta append, outside `publish`."""
    from deltalake import write_deltalake

    spec = table_of(root)
    rows = frame.with_columns(pl.lit(version, dtype=pl.Int64).alias("version"))
    if "role" in spec.partition_by:
        rows = rows.with_columns(pl.lit("data").alias("role"))
    rows = rows.select(pl.col(c).cast(t) if c in rows.columns else pl.lit(None, dtype=t).alias(c)
                       for c, t in spec.schema.items())
    write_deltalake(store.table_uri(spec.name), rows.to_arrow(), mode="append", partition_by=list(spec.partition_by),
                    storage_options=store.storage_options())


@pytest.mark.parametrize("kind", ["slice", "export"])
def test_a_version_reads_as_published_whatever_comes_after(kind: str, tmp_path: Path) -> None:
    store = open_store(tmp_path / "lake")
    root, make = (slice_root(NAME), slice_rows) if kind == "slice" else (export_root("sft"), sft_rows)

    def load(version: int) -> pl.DataFrame:
        return load_slice(NAME, version, lake=store) if kind == "slice" else load_export("sft", version, lake=store)

    first = publish(store, root, 1, {DATA: make("one")}, {"name": "first"})
    v1 = load(1)
    assert v1.equals(make("one"))
    publish(store, root, 2, {DATA: make("two", 7)}, {"name": "second"})
    mark_announced(store, root, 1, {"event_id": "e1"}, "topic")  # an announcement mark: a commit of its own
    rogue_append(store, root, 1, make("rogue"))  # rows slipped into v1's partition after v2
    assert announced_version(store, root) == 1 and unannounced(store) == [(root, 2)]
    latest = pl.scan_delta(store.table_uri(root)).filter(pl.col("version") == 1).collect()
    assert latest.height == 2 * v1.height  # the table now holds the rogue rows in v1's partition ...

    again = open_version(store, root, 1)  # ... but v1 is read at the Delta version of its own commit
    assert again.table_version == first["table"]["version"] == 0
    assert load(1).equals(v1) and load(2).equals(make("two", 7))
    assert f"sha256:{sha256(read_file(store, again, DATA))}" == first["content_hash"] == again.manifest["content_hash"]
    assert list_versions(store, root) == [1, 2] and verify_version(store, root, 1) == []
    # any Delta reader gets the same rows from that Delta version
    at_commit = pl.scan_delta(store.table_uri(root), version=again.table_version).filter(pl.col("version") == 1)
    assert at_commit.collect().height == v1.height
    # rows written into a version's partition before its publish make that version unpublishable, not mixed
    rogue_append(store, root, 3, make("early"))
    with pytest.raises(IntegrityError, match="files of version 3 that no publish committed"):
        publish(store, root, 3, {DATA: make("three")}, {})
