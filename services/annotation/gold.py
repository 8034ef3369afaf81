"""Gold labels in the lake: the annotators' submitted answers, a Delta table (`GOLD` in services/lake/tables.py)
with one row per response version (response_id, submitted_at).

`land` is one MERGE inserting the versions the table does not hold yet, so landing the same responses again (a
webhook retried, a reconcile after a webhook) adds no row and commits nothing. Corrections are landed masked
(`labeling.pii`, the bulk path). Readers keep each annotator's
latest answer per interaction. Both ways in parse Argilla's JSON here, so both produce identical rows for one
response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from flywheel_feedback.labeling.pii import mask_columns
from flywheel_feedback.services.annotation.layout import LABEL_CLASSES, QUESTION_CORRECTION, QUESTION_LABEL, queue_of
from flywheel_feedback.services.lake.delta import scan, table_version
from flywheel_feedback.services.lake.merge import insert_new
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import GOLD

log = logging.getLogger(__name__)

Source = Literal["webhook", "reconcile"]


@dataclass(frozen=True)
class GoldResponse:
    interaction_id: str
    queue: str
    dataset: str
    annotator: str
    annotator_id: str
    label: int
    correction: str | None
    submitted_at: datetime
    response_id: str
    source: Source

    @property
    def version(self) -> tuple[str, datetime]:
        """A response edited later is a new version: same id, later submitted_at."""
        return self.response_id, self.submitted_at


def land(store: ObjectStore, responses: Sequence[GoldResponse]) -> int | None:
    """Add the response versions the lake does not hold yet, in one commit; returns the table's new version
    (None when every version was already there, or there are none)."""
    from flywheel_feedback.services.privacy.argilla import owed_interactions

    # an erasure whose Argilla part is pending: its records' answers must not bring the interactions back
    owed = owed_interactions(store)
    responses = [r for r in responses if r.interaction_id not in owed]
    if not responses:
        return None
    versions = {r.version: r for r in sorted(responses, key=lambda r: r.version)}  # a batch may repeat one
    frame = pl.DataFrame([asdict(r) for r in versions.values()], schema=GOLD.schema)
    # annotators read masked text, but what they type may hold personal data too: landed masked, like every
    # derived table
    frame = mask_columns(frame, ["correction"], engine="fast")
    return insert_new(store, GOLD, frame).version


def read_gold_responses(store: ObjectStore, *, latest: bool = True) -> pl.DataFrame:
    """Every landed response; with `latest`, one row per (interaction_id, annotator): their last answer."""
    gold = scan(store, GOLD).collect().sort("submitted_at", "response_id")
    if not latest:
        return gold
    return gold.unique(subset=["interaction_id", "annotator"], keep="last", maintain_order=True)


def landed_versions(store: ObjectStore) -> set[tuple[str, datetime]]:
    """(response_id, submitted_at) of everything already in the lake."""
    gold = scan(store, GOLD).select("response_id", "submitted_at").collect()
    return set(zip(gold.get_column("response_id").to_list(), gold.get_column("submitted_at").to_list(), strict=True))


def gold_version(store: ObjectStore) -> int | None:
    """The gold table's Delta version (None before the first answer landed): what the labeler checkpoints on."""
    return table_version(store, GOLD)


# ---------------------------------------------------------------------------------------------------------------
# Argilla's JSON -> GoldResponse (webhook events and search results carry the same response fields)


def from_webhook_event(event: Mapping[str, Any], *, prefix: str) -> GoldResponse | None:
    """A `response.created|updated` event's submitted answer on one of our datasets; else None."""
    if event.get("type") not in ("response.created", "response.updated"):
        return None
    data = event.get("data") or {}
    record = data.get("record") or {}
    dataset = (record.get("dataset") or {}).get("name", "")
    user = data.get("user") or {}
    return _response(
        response=data,
        record=record,
        dataset=dataset,
        annotator=str(user.get("username") or user.get("id") or ""),
        prefix=prefix,
        source="webhook",
    )


def from_search_record(
    record: Mapping[str, Any], *, dataset: str, usernames: Mapping[str, str], prefix: str
) -> list[GoldResponse]:
    """The submitted answers of one record of a dataset search (`include=responses`)."""
    found = []
    for response in record.get("responses") or []:
        user_id = str(response.get("user_id", ""))
        gold = _response(
            response=response,
            record=record,
            dataset=dataset,
            annotator=usernames.get(user_id, user_id),
            prefix=prefix,
            source="reconcile",
        )
        if gold is not None:
            found.append(gold)
    return found


def _response(
    *,
    response: Mapping[str, Any],
    record: Mapping[str, Any],
    dataset: str,
    annotator: str,
    prefix: str,
    source: Source,
) -> GoldResponse | None:
    queue = queue_of(prefix, dataset)
    interaction_id = record.get("external_id")
    if queue is None or not interaction_id or response.get("status") != "submitted":
        return None
    values = response.get("values") or {}
    label = LABEL_CLASSES.get(str((values.get(QUESTION_LABEL) or {}).get("value")))
    if label is None:
        log.warning("response %s on record %s of %s has no quality label: skipped",
                    response.get("id"), interaction_id, dataset)
        return None
    correction = (values.get(QUESTION_CORRECTION) or {}).get("value")
    user_id = response.get("user_id") or (response.get("user") or {}).get("id") or ""
    return GoldResponse(
        interaction_id=str(interaction_id),
        queue=queue,
        dataset=dataset,
        annotator=annotator,
        annotator_id=str(user_id),
        label=label,
        correction=str(correction) if correction not in (None, "") else None,
        submitted_at=_utc(str(response.get("updated_at") or response.get("inserted_at"))),
        response_id=str(response.get("id")),
        source=source,
    )


def _utc(text: str) -> datetime:
    """Argilla writes naive UTC timestamps ("2026-11-27T01:43:22.368393")."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
