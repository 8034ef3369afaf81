"""The lake's files and folders get the modes the process's umask gives (or FLYWHEEL_LAKE_UMASK's), ours and
delta-rs's alike: a team can share a lake on a local or network disk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.merge import insert_new
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import OUTBOX, write_json
from flywheel_feedback.services.settings import LakeSettings

SPEC = delta.TableSpec("test/table", pl.Schema({"id": pl.Int64(), "text": pl.String()}), keys=("id",))


@pytest.fixture
def restore_umask() -> Iterator[None]:
    before = os.umask(0o022)
    os.umask(before)
    try:
        yield
    finally:
        os.umask(before)


def write_a_lake(store: LocalStore) -> None:
    store.put("state/labeler.json", b"{}")
    write_json(store, "state/other.json", {"a": 1})
    delta.append(store, SPEC, pl.DataFrame({"id": [1], "text": ["a"]}))  # our writer, delta-rs's commit
    delta.merge(store, SPEC, pl.DataFrame({"id": [1, 2], "text": ["b", "c"]}))  # delta-rs's writer
    items = pl.DataFrame({"interaction_id": ["i1"], "queue": ["audit"], "reason": ["r"], "priority": [1.0],
                          "source": ["s"], "queued_at": [None], "dataset": [None], "sent_at": [None]})
    insert_new(store, OUTBOX, items)


def modes(root: Path) -> tuple[set[int], set[int]]:
    files = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}
    folders = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_dir()}
    return files, folders


@pytest.mark.usefixtures("restore_umask")
@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), [(0o027, 0o640, 0o750), (0o002, 0o664, 0o775)])
def test_files_follow_the_process_umask(tmp_path: Path, umask: int, file_mode: int, folder_mode: int) -> None:
    os.umask(umask)
    store = LocalStore(tmp_path / "lake")
    write_a_lake(store)
    files, folders = modes(store.root)
    assert len(list(store.root.rglob("*.parquet"))) >= 3
    assert files == {file_mode} and folders == {folder_mode}


@pytest.mark.usefixtures("restore_umask")
def test_the_lake_setting_sets_the_umask(tmp_path: Path) -> None:
    os.umask(0o077)
    store = LakeSettings(url=str(tmp_path / "lake"), umask="0022").open()
    assert isinstance(store, LocalStore)
    write_a_lake(store)
    assert modes(store.root) == ({0o644}, {0o755})
    with pytest.raises(ValueError, match="umask"):
        LakeSettings(umask="rw-r--r--")
