"""The Argilla part of an erasure: the records of the person's interactions leave every queue's dataset.

A record's Argilla `external_id` is its interaction id (services/annotation/push.py); deleting a record deletes
its responses and suggestions with it. Before the lake part starts, the erasure writes what it owes Argilla into
`privacy/argilla_pending` (the SHA-256 of each interaction id, never the id), so neither Argilla being down nor a
crash loses the obligation. `erase_pending` then pages through each queue's dataset, hashes each record's
external id (search API, in a total order), deletes the matches (DELETE /api/v1/datasets/{id}/records, at most
100 ids a call), appends an
audit row per erasure it finished (table `argilla`, rows = records deleted) and drops that erasure's pending
rows. Every `flywheel privacy erase` run does this for every pending erasure, its own and older ones. Meanwhile
answers to those records (webhooks, reconcile) are not landed as gold (`owed_interactions`), so they do not bring
the interactions back into the lake.

A run cut short after some deletes leaves the erasure pending; the next run finds only the rest, so the audit
counts the records deleted by the run that finished it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from flywheel_feedback.services.annotation.client import connect, is_unavailable
from flywheel_feedback.services.annotation.datasets import find_dataset
from flywheel_feedback.services.annotation.layout import QUEUES, dataset_name
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.deletes import delete_rows, purge
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import ARGILLA_PENDING, ERASURES

if TYPE_CHECKING:
    import argilla as rg

    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)

AUDIT_TABLE = "argilla"  # the `table` of the audit row saying how many Argilla records an erasure deleted
PAGE = 500  # records per page while looking for the erased ones
DELETE_LIMIT = 100  # ids per DELETE call: the server refuses more
SEARCH = {"sort": [{"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"},
                   {"scope": {"entity": "record", "property": "id"}, "order": "asc"}]}


@dataclass(frozen=True)
class ArgillaErasure:
    """What one pass over the pending erasures did."""

    deleted: dict[str, int] = field(default_factory=dict)  # erasure id -> records deleted, for those finished
    pending: tuple[str, ...] = ()  # erasure ids still pending afterwards
    error: str | None = None  # why they are (Argilla unreachable, or refused)


def interaction_hash(interaction_id: str) -> str:
    return hashlib.sha256(interaction_id.encode()).hexdigest()


def record_pending(
    store: ObjectStore, interaction_ids: Sequence[str], *, erasure_id: str, requested_by: str, requested_at: datetime
) -> None:
    """Owe Argilla the deletion of these interactions' records (nothing is written for no interactions)."""
    if not interaction_ids:
        return
    rows = pl.DataFrame(
        {"erasure_id": erasure_id, "requested_by": requested_by, "requested_at": requested_at,
         "interaction_hash": sorted({interaction_hash(i) for i in interaction_ids})},
        schema=ARGILLA_PENDING.schema,
    )
    delta.append(store, ARGILLA_PENDING, rows)


def read_pending(store: ObjectStore) -> pl.DataFrame:
    return delta.scan(store, ARGILLA_PENDING).collect()


class OwedInteractions:
    """Tells whether an interaction id is one whose Argilla record a pending erasure still owes."""

    def __init__(self, hashes: set[str]) -> None:
        self._hashes = hashes

    def __contains__(self, interaction_id: object) -> bool:
        return bool(self._hashes) and interaction_hash(str(interaction_id)) in self._hashes


def owed_interactions(store: ObjectStore) -> OwedInteractions:
    """The interactions pending erasures owe Argilla: answers to their records (webhooks, reconcile) are not
    landed meanwhile."""
    return OwedInteractions(set(read_pending(store).get_column("interaction_hash").to_list()))


def erase_pending(store: ObjectStore, settings: AnnotationSettings) -> ArgillaErasure:
    """Delete from Argilla the records every pending erasure owes; never raises for Argilla's answers (the
    erasures stay pending, and `error` says why)."""
    pending = read_pending(store)
    if pending.is_empty():
        return ArgillaErasure()
    owed = dict(zip(pending.get_column("interaction_hash"), pending.get_column("erasure_id"), strict=True))
    erasures = tuple(sorted(set(owed.values())))
    deleted: Counter[str] = Counter()
    try:
        client = connect(settings)
        for dataset_id, matches in _matching_records(client, settings, owed):
            http = client.api.http_client
            for start in range(0, len(matches), DELETE_LIMIT):
                chunk = matches[start:start + DELETE_LIMIT]
                http.delete(f"/api/v1/datasets/{dataset_id}/records",
                            params={"ids": ",".join(record_id for record_id, _ in chunk)}).raise_for_status()
                deleted.update(erasure for _, erasure in chunk)
    except Exception as exc:
        why = "unreachable" if is_unavailable(exc) else "refused"
        error = f"Argilla at {settings.url} {why}: {type(exc).__name__}: {str(exc)[:200]}"
        log.warning("%d erasures stay pending in Argilla (%s); the next `flywheel privacy erase` retries them",
                    len(erasures), error)
        return ArgillaErasure(pending=erasures, error=error)
    done = {erasure: deleted.get(erasure, 0) for erasure in erasures}
    _audit(store, pending, done)
    delete_rows(store, ARGILLA_PENDING, pl.col("erasure_id").is_in(list(done)), columns=["erasure_id"],
                metadata={"flywheel.erasure_ids": ",".join(done)})
    purge(store, ARGILLA_PENDING.name)
    log.info("Argilla: %d records deleted for %d erasures", sum(done.values()), len(done))
    return ArgillaErasure(deleted=done)


def _matching_records(
    client: rg.Argilla, settings: AnnotationSettings, owed: dict[str, str]
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Per queue dataset that exists: its id, and (record id, erasure id) of each record an erasure owes."""
    http = client.api.http_client
    for queue in QUEUES:
        dataset = find_dataset(client, name=dataset_name(settings.dataset_prefix, queue), workspace=settings.workspace)
        if dataset is None:
            continue
        # all pages first, then the deletes: deleting while paging by offset would skip records. The search API
        # sorts in a total order (a bulk upsert inserts many records at the same instant), so pages do not overlap
        matches: dict[str, str] = {}
        offset = 0
        while True:
            page = http.post(f"/api/v1/datasets/{dataset.id}/records/search", json=SEARCH,
                             params={"offset": offset, "limit": PAGE})
            page.raise_for_status()
            found = page.json()
            items: list[dict[str, Any]] = found.get("items") or []
            for item in items:
                record = item["record"]
                external = record.get("external_id")
                erasure = owed.get(interaction_hash(str(external))) if external is not None else None
                if erasure is not None:
                    matches[str(record["id"])] = erasure
            offset += len(items)
            if not items or offset >= int(found.get("total") or 0):
                break
        if matches:
            yield str(dataset.id), list(matches.items())


def _audit(store: ObjectStore, pending: pl.DataFrame, done: dict[str, int]) -> None:
    finished_at = datetime.now(UTC)
    who = pending.unique("erasure_id").select("erasure_id", "requested_by", "requested_at")
    rows = [
        {"erasure_id": erasure_id, "requested_by": requested_by, "requested_at": requested_at,
         "finished_at": finished_at, "table": AUDIT_TABLE, "rows": done[erasure_id], "files_rewritten": 0,
         "new_version": None}
        for erasure_id, requested_by, requested_at in who.iter_rows()
    ]
    delta.append(store, ERASURES, pl.DataFrame(rows, schema=ERASURES.schema))
