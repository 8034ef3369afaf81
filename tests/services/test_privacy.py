"""Privacy that holds: derived tables hold masked text only, and an erased person is nowhere in the lake (its
tables read with `deltalake` directly, and every file's bytes, log included), on local disk and on S3, also
after a labeler pass, a slice renewal and an export; and their records leave the real Argilla (only theirs), also
when Argilla was unreachable at first (the deletion stays pending and a later run completes it)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from flywheel_feedback.labeling.exports import Kind
from flywheel_feedback.labeling.votes import count_rows
from flywheel_feedback.services.annotation.gold import GoldResponse, land, read_gold_responses
from flywheel_feedback.services.annotation.outbox import enqueue
from flywheel_feedback.services.annotation.push import push
from flywheel_feedback.services.cli import app
from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import ERASURES, LABELS, VOTE_COUNTS
from flywheel_feedback.services.privacy import erase_user, read_erasures
from flywheel_feedback.services.privacy.argilla import AUDIT_TABLE as ARGILLA_AUDIT
from flywheel_feedback.services.privacy.argilla import DELETE_LIMIT, erase_pending, read_pending, record_pending
from flywheel_feedback.services.settings import AnnotationSettings
from flywheel_feedback.services.slices import load_export, load_slice
from flywheel_feedback.services.slices.api import manifest_of
from flywheel_feedback.services.slices.build import renew
from flywheel_feedback.services.slices.definitions import find_definition
from flywheel_feedback.services.slices.exports import export
from flywheel_feedback.services.slices.versions import (
    export_root,
    list_versions,
    read_manifest,
    slice_root,
    verify_version,
)
from tests.conftest import free_port

from .privacy_helpers import (
    NAME,
    OPTIONS,
    PLANTED_PII,
    Person,
    argilla_records,
    argilla_settings,
    build_lake,
    delete_datasets,
    file_texts,
    interactions_of,
    leaks,
    of_interactions,
    table_texts,
)

KINDS: tuple[Kind, ...] = ("sft", "preference", "classifier")
EVERY_KIND_OF_TABLE = {"raw/events", "labels/interactions", "outbox/items", "gold/responses", f"slices/{NAME}",
                       "exports/sft", "exports/preference", "exports/classifier"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Person]:
    root = tmp_path_factory.mktemp("privacy")
    store, definitions, person = build_lake(root)
    assert isinstance(store, LocalStore)
    return store.root, definitions, person


def copy_of(built: tuple[Path, Path, Person], dest: Path) -> LocalStore:
    shutil.copytree(built[0], dest)
    return LocalStore(dest)


def test_no_derived_table_holds_the_planted_personal_data(built: tuple[Path, Path, Person]) -> None:
    store = LocalStore(built[0])
    tables = table_texts(store)
    assert {"labels/interactions", "labels/issues", "outbox/items", "gold/responses", f"slices/{NAME}",
            "exports/sft", "exports/preference", "exports/classifier"} <= set(tables)
    planted = re.compile("|".join(PLANTED_PII))
    # raw events keep what was sent (the labeler needs it): the planted data is there
    assert len(planted.findall(tables["raw/events"])) > 100
    found = {name: planted.findall(text)[:3] for name, text in tables.items() if name != "raw/events"}
    assert {name: hits for name, hits in found.items() if hits} == {}
    # masked, not dropped: the placeholders are in the labels, the gold corrections and the slice
    for name in ("labels/interactions", "gold/responses", f"slices/{NAME}"):
        assert re.search(r"\[(EMAIL|PHONE|CARD|KEY)_\d+\]", tables[name]), name


def check_gone(store: ObjectStore, needles: list[str], *, stage: str) -> None:
    tables, files = table_texts(store), file_texts(store)
    assert leaks(tables, needles) == {}, f"{stage}: tables"
    assert leaks(files, needles) == {}, f"{stage}: files"
    assert any("/_delta_log/" in k for k in files) and any(k.endswith(".parquet") for k in files)


def check_votes(store: ObjectStore) -> None:
    """The vote-pattern counts are those of the label rows there are."""
    labels = delta.scan(store, LABELS).select("date", "pattern", "gold_label").collect()
    counted = delta.scan(store, VOTE_COUNTS).collect().sort("date", "pattern", "gold_label")
    assert counted.equals(count_rows(labels).sort("date", "pattern", "gold_label"))


def test_erase_removes_every_row_and_byte_of_a_person_and_nothing_brings_them_back(
    built: tuple[Path, Path, Person], tmp_path: Path
) -> None:
    store = copy_of(built, tmp_path / "lake")
    person = built[2]
    before = table_texts(store)
    ids = interactions_of(before, person.user_id)
    assert set(person.planted) <= ids
    needles = person.needles(ids)
    assert set(leaks(before, needles)) >= EVERY_KIND_OF_TABLE  # the person is in every kind of table
    assert leaks(file_texts(store), needles)
    slice_before = {v: manifest_of(store, NAME, v) for v in list_versions(store, slice_root(NAME))}
    assert set(slice_before) == {1, 2}

    result = CliRunner().invoke(app, ["privacy", "erase", "--user-id", person.user_id, "--lake", str(store.root),
                                      "--yes", "--requested-by", "dpo@example.org", "--no-announce"])
    assert result.exit_code == 0, result.output
    check_gone(store, needles, stage="after erase")
    check_votes(store)

    audit = read_erasures(store)
    assert set(audit.get_column("requested_by")) == {"dpo@example.org"}
    assert audit.get_column("erasure_id").n_unique() == 1
    rows = dict(audit.select("table", "rows").iter_rows())
    assert rows["raw/events"] >= 5 * len(person.planted) and rows["labels/interactions"] == len(ids)
    assert all(rows[t] > 0 for t in EVERY_KIND_OF_TABLE)
    erasure_id = audit.get_column("erasure_id")[0]
    # old versions: rewritten in place, readable and verified, their manifests list the erasure
    for version, old in slice_before.items():
        assert verify_version(store, slice_root(NAME), version) == []
        amended = manifest_of(store, NAME, version)
        assert [e["id"] for e in amended["erasures"]] == [erasure_id]
        assert amended["rows"] == old["rows"] - amended["erasures"][0]["rows_removed"]["data.parquet"]
        assert amended["table"]["published_version"] == old["table"]["version"]
        assert load_slice(NAME, version, lake=store).height == amended["rows"]
    # the latest lost rows: a new version says why
    assert list_versions(store, slice_root(NAME)) == [1, 2, 3]
    v3 = manifest_of(store, NAME, 3)
    assert v3["erasure"] == {"id": erasure_id, "parent_version": 2,
                             "rows_removed": slice_before[2]["rows"] - v3["rows"]}
    assert v3["reason"].startswith(f"erasure {erasure_id}") and v3["parent"]["version"] == 2
    assert load_slice(NAME, 3, lake=store).equals(load_slice(NAME, 2, lake=store))
    for kind in ("sft", "preference", "classifier"):
        assert list_versions(store, export_root(kind)) == [1, 2]
        assert load_export(kind, 2, lake=store).height == read_manifest(store, export_root(kind), 2)["rows"]

    # a labeler pass, a renewal and an export do not bring the person back
    again = label_pass(store, options=OPTIONS)
    assert again.changed and again.mode == "incremental"
    check_votes(store)
    assert renew(store, find_definition(built[1], NAME), force=True).published
    for kind in KINDS:
        assert export(store, kind, exclude_slices=False, min_confidence=0.5).published
    check_gone(store, needles, stage="after a labeler pass, a renewal and exports")
    assert not label_pass(store, options=OPTIONS).changed  # nothing new: nothing recomputed

    # erasing again finds nothing, and says so in the audit
    twice = erase_user(store, person.user_id, requested_by="dpo@example.org")
    assert twice.total == 0 and twice.new_versions == {}
    assert read_erasures(store).get_column("erasure_id").n_unique() == 2
    assert leaks({"audit": table_texts(store)[ERASURES.name]}, needles) == {}


@pytest.mark.s3
def test_erase_on_s3_leaves_no_object_holding_the_person(
    built: tuple[Path, Path, Person], s3_url: str, s3_options: dict[str, Any]
) -> None:
    local = LocalStore(built[0])
    store = S3Store(s3_url, **s3_options)
    for key in local.list(""):
        store.put(key, local.get(key))
    person = built[2]
    needles = person.needles(interactions_of(table_texts(store), person.user_id))
    assert leaks(file_texts(store), needles)
    listed = store.list("")

    result = erase_user(store, person.user_id, requested_by="dpo@example.org")
    assert result.total > 0 and result.new_versions
    check_gone(store, needles, stage="after erase on S3")  # lists every object of the prefix and reads it
    assert set(store.list("")) != set(listed)
    again = label_pass(store, options=OPTIONS)
    assert again.mode == "incremental"
    check_gone(store, needles, stage="after a labeler pass on S3")


@pytest.fixture
def argilla(built: tuple[Path, Path, Person], tmp_path: Path) -> Iterator[tuple[LocalStore, AnnotationSettings]]:
    """A copy of the lake whose outbox (the person's interactions and others') is pushed to Argilla, into
    datasets of this test's own prefix (deleted afterwards)."""
    store = copy_of(built, tmp_path / "lake")
    settings = argilla_settings(f"fw-erase-{uuid.uuid4().hex[:10]}-")
    try:
        pushed = push(store, settings)
        assert pushed.complete and pushed.sent > 0, pushed
        yield store, settings
    finally:
        delete_datasets(settings)


def users_of(store: ObjectStore, ids: set[str]) -> dict[str, str]:
    labels = delta.scan(store, LABELS).select("interaction_id", "user_id").collect()
    return {i: u for i, u in labels.iter_rows() if i in ids}


def argilla_audit(store: ObjectStore) -> dict[str, int]:
    audit = read_erasures(store).filter(pl.col("table") == ARGILLA_AUDIT)
    return dict(audit.select("erasure_id", "rows").iter_rows())


@pytest.mark.argilla
def test_erase_deletes_the_persons_records_from_argilla_and_only_theirs(
    built: tuple[Path, Path, Person], argilla: tuple[LocalStore, AnnotationSettings]
) -> None:
    store, settings = argilla
    person = built[2]
    before = argilla_records(settings)
    theirs = interactions_of(table_texts(store), person.user_id)
    owed = of_interactions(before, theirs)
    assert set(person.planted) <= {record for _, record in owed}
    others = set(users_of(store, {r for _, r in before - owed}).values())
    assert len(others) >= 2 and person.user_id not in others  # other users' records are there too

    result = erase_user(store, person.user_id, requested_by="dpo@example.org", annotation=settings)
    assert argilla_records(settings) == before - owed
    assert result.argilla_deleted == len(owed) and not result.argilla_pending
    assert argilla_audit(store) == {result.erasure_id: len(owed)}
    assert read_pending(store).is_empty()
    check_gone(store, person.needles(theirs), stage="after erase with Argilla")


@pytest.mark.argilla
def test_erase_with_argilla_unreachable_keeps_the_deletion_pending_and_a_later_run_completes_it(
    built: tuple[Path, Path, Person], argilla: tuple[LocalStore, AnnotationSettings]
) -> None:
    store, settings = argilla
    person = built[2]
    before = argilla_records(settings)
    theirs = interactions_of(table_texts(store), person.user_id)
    owed = of_interactions(before, theirs)
    assert owed
    closed = settings.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})

    first = erase_user(store, person.user_id, requested_by="dpo@example.org", annotation=closed)
    assert first.total > 0  # the lake part completed
    assert first.argilla_pending and first.argilla_deleted is None
    assert first.argilla_error is not None and "unreachable" in first.argilla_error
    assert argilla_records(settings) == before
    pending = read_pending(store)
    assert set(pending.get_column("erasure_id")) == {first.erasure_id} and pending.height == len(theirs)
    assert argilla_audit(store) == {}
    check_gone(store, person.needles(theirs), stage="erased, Argilla pending")  # hashes only, no id
    # an answer to one of their records, meanwhile (a webhook or reconcile), does not land
    answer = GoldResponse(interaction_id=sorted(owed)[0][1], queue="audit", dataset=f"{settings.dataset_prefix}audit",
                          annotator="ann-1", annotator_id="a-1", label=1, correction=None,
                          submitted_at=datetime.now(UTC), response_id="r-late", source="webhook")
    assert land(store, [answer]) is None
    assert "r-late" not in read_gold_responses(store).get_column("response_id").to_list()

    # a later run (here for the same person: it finds nothing in the lake) with the right URL finishes it
    env = {"FLYWHEEL_ARGILLA_URL": settings.url, "FLYWHEEL_ARGILLA_DATASET_PREFIX": settings.dataset_prefix,
           "FLYWHEEL_ARGILLA_API_KEY": settings.api_key.get_secret_value() if settings.api_key else ""}
    result = CliRunner().invoke(app, ["privacy", "erase", "--user-id", person.user_id, "--lake", str(store.root),
                                      "--yes", "--requested-by", "dpo@example.org", "--no-announce"], env=env)
    assert result.exit_code == 0, result.output
    assert f"1 earlier erasures finished in Argilla ({len(owed)} records)" in result.output
    assert person.user_id not in result.output
    assert argilla_records(settings) == before - owed
    assert argilla_audit(store) == {first.erasure_id: len(owed)}
    assert read_pending(store).is_empty()
    check_gone(store, person.needles(theirs), stage="after the retry")


@pytest.mark.argilla
def test_erase_pending_deletes_more_records_than_one_delete_call_takes(
    argilla: tuple[LocalStore, AnnotationSettings]
) -> None:
    store, settings = argilla
    more = delta.scan(store, LABELS).select("interaction_id").head(2 * DELETE_LIMIT).collect()
    enqueue(store, more.with_columns(queue=pl.lit("audit"), reason=pl.lit("test"), priority=pl.lit(1.0)),
            source="test")
    assert push(store, settings).complete
    before = argilla_records(settings)
    assert len(before) > DELETE_LIMIT
    record_pending(store, sorted({record for _, record in before}), erasure_id="e-all", requested_by="test",
                   requested_at=datetime.now(UTC))
    done = erase_pending(store, settings)
    assert done.deleted == {"e-all": len(before)} and done.error is None
    assert argilla_records(settings) == set()
    assert read_pending(store).is_empty()
