"""Erasure on request: every row about one person leaves every table of the lake, the files and the log, and an
audit record says who asked, when, and how many rows each table lost.

A person is their `user_id`. Their interactions are found where the id is: the raw events (an interaction event
carries it) and the labels (one row per interaction, with user_id); feedback events, gold answers, outbox items,
cleanlab's findings and slice and export rows carry only the interaction id, so they are found by that. In order:

1. raw events of the user or of one of their interactions; the dead letters naming them;
2. their label rows, with the vote-pattern counts decremented by the same rows (the label model is fitted from
   the counts, so they must stay the counts of the rows there are), then cleanlab's findings, the outbox, gold;
3. every version of every slice and export (services/slices/erasure.py: old versions rewritten in place with
   the erasure recorded, a new version when the latest lost rows);
4. purge: the files replaced are vacuumed with no retention, so they are gone from disk or S3 (time travel to
   before the erasure ends), and a table made before its log statistics were limited gets its log cleaned up to
   a checkpoint (`services/lake/deletes.py`);
5. the audit record (`privacy/erasures`);
6. with Argilla configured (an API key in AnnotationSettings), the records of their interactions leave every
   queue's dataset, with their responses and suggestions (services/privacy/argilla.py). What Argilla is owed is
   written before step 1 (`privacy/argilla_pending`, hashes of the interaction ids), so Argilla being down does
   not stop the lake part nor lose the obligation: every later run retries every pending erasure, and an audit
   row (table `argilla`) counts the records deleted once done.

Deletes are commits of their own (not Delta DELETE, which would write the predicate, the user's id, into the
log). The log records statistics only of columns without personal data (TableSpec.stats), and commit metadata
carries the erasure id only. A later labeler pass does not bring the rows back: it recomputes the interactions
whose raw files were rewritten, and the user's are no longer in them; renewals and exports read the labels.

Erasure is idempotent: run it again and it finds nothing, or what a labeler pass, renewal or export that was
already running when it started wrote meanwhile (run it while none is, or run it twice). It cannot reach copies
outside the lake and Argilla: the Kafka topics (their retention), files already pulled.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from flywheel_feedback.labeling.votes import apply_changes
from flywheel_feedback.services.labeler.rows import APP_RAW, read_checkpoint
from flywheel_feedback.services.lake import dead_letters, delta
from flywheel_feedback.services.lake.deletes import Deleted, delete_rows, purge
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    DEAD_LETTER_PREFIX,
    ERASURES,
    GOLD,
    ISSUES,
    LABELS,
    OUTBOX,
    RAW_EVENTS,
    VOTE_COUNTS,
)
from flywheel_feedback.services.privacy.argilla import erase_pending, record_pending
from flywheel_feedback.services.slices.erasure import erase_from_versions

if TYPE_CHECKING:
    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)

ERASURE_ID_METADATA = "flywheel.erasure_id"


@dataclass(frozen=True)
class Erasure:
    """What one erasure did (what the audit table records, and the versions it published)."""

    erasure_id: str
    requested_by: str
    requested_at: datetime
    finished_at: datetime
    interactions: int  # the user's interactions found
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    files_rewritten: dict[str, int] = field(default_factory=dict)
    new_versions: dict[str, int] = field(default_factory=dict)  # slices/<name>, exports/<kind> -> new version
    purged: dict[str, int] = field(default_factory=dict)  # table -> files vacuumed
    argilla_deleted: int | None = None  # records deleted from Argilla; None: not configured, or still pending
    argilla_pending: bool = False  # the Argilla part waits for a later run (argilla_error says why)
    argilla_error: str | None = None
    argilla_retried: dict[str, int] = field(default_factory=dict)  # older erasures finished now -> records

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        tables = ", ".join(f"{t} {n}" for t, n in self.rows.items() if n) or "nothing found"
        versions = "".join(f"; {root} v{v} published without them" for root, v in self.new_versions.items())
        argilla = ""
        if self.argilla_pending:
            argilla = "; Argilla records pending (a later `flywheel privacy erase` retries)"
        elif self.argilla_deleted is not None:
            argilla = f"; {self.argilla_deleted} Argilla records deleted"
        if self.argilla_retried:
            argilla += (f"; {len(self.argilla_retried)} earlier erasures finished in Argilla "
                        f"({sum(self.argilla_retried.values())} records)")
        return (f"erasure {self.erasure_id}: {self.interactions} interactions, {self.total} rows ({tables}); "
                f"{sum(self.purged.values())} files vacuumed{versions}{argilla}")


def erase_user(
    store: ObjectStore,
    user_id: str,
    *,
    requested_by: str,
    now: datetime | None = None,
    annotation: AnnotationSettings | None = None,
) -> Erasure:
    """Delete every row about `user_id` from every table of the lake, vacuum the files, record the erasure; with
    `annotation` holding an API key, also their records in Argilla (and those of earlier pending erasures)."""
    if not user_id or not user_id.strip():
        raise ValueError(f"expected the user id to erase, got {user_id!r}")
    if not requested_by or not requested_by.strip():
        raise ValueError("expected who requests the erasure (an operator or a ticket reference), got nothing")
    requested_at = now or datetime.now(UTC)
    erasure_id = uuid.uuid4().hex
    metadata = {ERASURE_ID_METADATA: erasure_id}
    ids = interactions_of(store, user_id)
    argilla = annotation is not None and annotation.api_key is not None
    if argilla:
        record_pending(store, ids.to_list(), erasure_id=erasure_id, requested_by=requested_by,
                       requested_at=requested_at)
    wanted = ids.implode()
    of_user = (pl.col("user_id") == user_id) | pl.col("interaction_id").is_in(wanted)
    of_interactions = pl.col("interaction_id").is_in(wanted)

    deleted: list[Deleted] = [delete_rows(store, RAW_EVENTS, of_user, columns=["user_id", "interaction_id"],
                                          metadata=metadata)]
    letters, letter_files = dead_letters.erase(store, [user_id, *ids.to_list()])
    labels = delete_rows(store, LABELS, of_user, columns=["user_id", "interaction_id"], metadata=metadata)
    deleted.append(labels)
    _decrement_votes(store, labels.rows)
    for spec in (ISSUES, OUTBOX, GOLD):
        deleted.append(delete_rows(store, spec, of_interactions, columns=["interaction_id"], metadata=metadata))
    versions = erase_from_versions(store, ids, erasure_id=erasure_id, at=requested_at)

    rows = {d.table: d.rows.height for d in deleted}
    rows[DEAD_LETTER_PREFIX] = letters
    files = {d.table: d.files_rewritten for d in deleted}
    files[DEAD_LETTER_PREFIX] = letter_files
    for erased in versions:
        rows[erased.root], files[erased.root] = erased.rows, len(erased.versions)
    # ISSUES always: it is rewritten by every pass, and its older versions' files name past findings
    touched = {d.table for d in deleted if d.version is not None} | {ISSUES.name} | {v.root for v in versions}
    purged = {name: _purge(store, name) for name in sorted(touched)}
    result = Erasure(
        erasure_id=erasure_id, requested_by=requested_by, requested_at=requested_at,
        finished_at=datetime.now(UTC), interactions=ids.len(), rows=rows, files_rewritten=files,
        new_versions={v.root: v.new_version for v in versions if v.new_version is not None}, purged=purged,
    )
    _audit(store, result)
    if annotation is not None and argilla:
        result = _erase_in_argilla(store, annotation, result)
    log.info("%s", result.summary())
    return result


def _erase_in_argilla(store: ObjectStore, annotation: AnnotationSettings, result: Erasure) -> Erasure:
    done = erase_pending(store, annotation)
    mine = result.erasure_id
    deleted = done.deleted.get(mine, 0 if mine not in done.pending else None)  # 0: it owed nothing
    retried = {e: n for e, n in done.deleted.items() if e != mine}
    return replace(result, argilla_deleted=deleted, argilla_pending=mine in done.pending,
                   argilla_error=done.error, argilla_retried=retried)


def interactions_of(store: ObjectStore, user_id: str) -> pl.Series:
    """The ids of the user's interactions: those whose interaction event, or label row, carries `user_id`."""
    found = [
        delta.scan(store, spec).filter(pl.col("user_id") == user_id).select("interaction_id").collect()
        for spec in (RAW_EVENTS, LABELS)
    ]
    ids = pl.concat(found).get_column("interaction_id").drop_nulls().unique().sort()
    return ids.alias("interaction_id")


def _decrement_votes(store: ObjectStore, removed: pl.DataFrame) -> None:
    """The vote counts without the deleted label rows, as of the same labeler checkpoint. Counts that are behind
    the labels already (a pass died between its two commits) are left: the next pass recounts them."""
    if removed.is_empty():
        return
    checkpoint = read_checkpoint(store)
    counted_at = delta.transaction_versions(store, VOTE_COUNTS, [APP_RAW]).get(APP_RAW)
    if checkpoint is None or counted_at != checkpoint.raw:
        log.warning("vote counts are behind the labels: the next labeler pass recounts them")
        return
    counts = delta.scan(store, VOTE_COUNTS).collect()
    after = apply_changes(counts, removed=removed, added=removed.clear())
    delta.overwrite(store, VOTE_COUNTS, after, transactions={APP_RAW: counted_at})


def _purge(store: ObjectStore, name: str) -> int:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(store.table_uri(name), storage_options=store.storage_options()):
        return 0
    return purge(store, name).vacuumed


def _audit(store: ObjectStore, erasure: Erasure) -> None:
    rows = [
        {"erasure_id": erasure.erasure_id, "requested_by": erasure.requested_by,
         "requested_at": erasure.requested_at, "finished_at": erasure.finished_at, "table": table, "rows": n,
         "files_rewritten": erasure.files_rewritten.get(table, 0), "new_version": erasure.new_versions.get(table)}
        for table, n in erasure.rows.items()
    ]
    delta.append(store, ERASURES, pl.DataFrame(rows, schema=ERASURES.schema))


def read_erasures(store: ObjectStore) -> pl.DataFrame:
    """The audit of every erasure: one row per table it searched (newest first)."""
    return delta.scan(store, ERASURES).collect().sort("requested_at", "table", descending=[True, False])
