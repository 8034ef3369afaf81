"""Gold labels in the lake: the annotators' submitted answers, one row per response version.

A file's name is a hash of the (response id, submitted_at) pairs it holds, so landing the same responses
again (a webhook retried, a reconcile after a webhook) rewrites the same file instead of adding rows.
A webhook and a reconcile may still land one response in two different files: readers dedupe by
(interaction_id, annotator), keeping the latest answer. Both ways parse Argilla's JSON here, so both
produce identical rows for one response.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import polars as pl

from flywheel_feedback.services.annotation.layout import LABEL_CLASSES, QUESTION_CORRECTION, QUESTION_LABEL, queue_of
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import GOLD_PREFIX, read_prefix, write_table

log = logging.getLogger(__name__)

Source = Literal["webhook", "reconcile"]
GOLD_SCHEMA: Final[dict[str, Any]] = {
    "interaction_id": pl.String,
    "queue": pl.String,
    "dataset": pl.String,
    "annotator": pl.String,
    "annotator_id": pl.String,
    "label": pl.Int64,
    "correction": pl.String,
    "submitted_at": pl.Datetime("us", "UTC"),
    "response_id": pl.String,
    "source": pl.String,
}


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


def land(store: ObjectStore, responses: Sequence[GoldResponse]) -> str | None:
    """Write responses as one gold file (None if there are none); returns its key."""
    if not responses:
        return None
    ordered = sorted(responses, key=lambda r: r.version)
    digest = hashlib.sha256("\n".join(f"{r.response_id}@{r.submitted_at.isoformat()}" for r in ordered).encode())
    day = min(r.submitted_at for r in ordered).date().isoformat()
    key = f"{GOLD_PREFIX}/date={day}/{digest.hexdigest()[:24]}.parquet"
    frame = pl.DataFrame([asdict(r) for r in ordered], schema=GOLD_SCHEMA)
    write_table(store, key, frame)
    return key


def read_gold_responses(store: ObjectStore, *, latest: bool = True) -> pl.DataFrame:
    """Every landed response; with `latest`, one row per (interaction_id, annotator): their last answer."""
    gold = read_prefix(store, GOLD_PREFIX, schema=GOLD_SCHEMA)
    if gold.is_empty():
        return pl.DataFrame(schema=GOLD_SCHEMA)
    gold = gold.select([pl.col(c).cast(t) for c, t in GOLD_SCHEMA.items() if c in gold.columns])
    if not latest:
        return gold
    return gold.sort("submitted_at", "response_id").unique(
        subset=["interaction_id", "annotator"], keep="last", maintain_order=True
    )


def landed_versions(store: ObjectStore) -> set[tuple[str, datetime]]:
    """(response_id, submitted_at) of everything already in the lake."""
    gold = read_gold_responses(store, latest=False)
    return set(zip(gold.get_column("response_id").to_list(), gold.get_column("submitted_at").to_list(), strict=True))


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
