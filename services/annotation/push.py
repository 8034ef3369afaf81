"""Push the pending outbox to Argilla: one dataset per queue, batches marked sent only once Argilla confirms.

The record id is the interaction id (Argilla 2.x stores it as the record's `external_id`, unique per dataset,
and its bulk upsert matches on it), so pushing an item twice updates the same record and never duplicates it.
Pending items are the outbox rows without sent_at; a batch is marked sent (dataset and sent_at set in place, one
Delta commit) only after Argilla confirmed it. A batch that fails because Argilla is unreachable is retried with
backoff; when retries run out the push stops, and that batch and every later one stay pending for the next push.
A batch Argilla rejects as invalid (422) is sent record by record, so one bad record holds back only itself.
With `stop` set (serve's shutdown), the push ends after the batch in flight: the rest stays pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from flywheel_feedback.services.annotation.client import ArgillaUnavailableError, connect, is_unavailable
from flywheel_feedback.services.annotation.datasets import ensure_dataset
from flywheel_feedback.services.annotation.layout import QUEUES, check_queues, dataset_name, has_conversation_field
from flywheel_feedback.services.annotation.outbox import mark_sent, pending_items
from flywheel_feedback.services.annotation.records import RecordPayload, build_records, masked_items
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    import argilla as rg

    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class PushResult:
    sent: int = 0  # records Argilla confirmed in this push
    pending: int = 0  # items still pending afterwards (unreachable, rejected or without labels)
    rejected: int = 0  # records Argilla refused as invalid (they stay pending; see the log)
    without_labels: int = 0  # items whose interaction is not in the labels table yet
    per_dataset: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # set when the push stopped early because Argilla was unreachable
    seconds: float = 0.0
    stopped: bool = False  # ended early because `stop` was set

    @property
    def complete(self) -> bool:
        return self.error is None and self.pending == 0


def push(
    store: ObjectStore,
    settings: AnnotationSettings,
    *,
    client: rg.Argilla | None = None,
    queues: Iterable[str] | None = None,
    resend: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> PushResult:
    """Send every pending outbox item (every item with `resend`) to its queue's dataset."""
    say = progress or (lambda _: None)
    started = time.perf_counter()
    pending = pending_items(store, queues=None if queues is None else check_queues(queues), resend=resend)
    unknown = pending.filter(~pl.col("queue").is_in(list(QUEUES)))
    if unknown.height:
        # Answers from such a dataset could not be mapped back to a queue: keep them out of Argilla.
        log.error("%d outbox items name queues flywheel does not know (%s): they stay pending", unknown.height,
                  sorted(set(unknown.get_column("queue").to_list())))
        pending = pending.filter(pl.col("queue").is_in(list(QUEUES)))
    if pending.is_empty():
        say("nothing pending")
        return PushResult(pending=unknown.height, seconds=time.perf_counter() - started)
    labels = read_labels(store)
    if labels is None:
        say(f"{pending.height} items pending, but the lake has no labels yet (the labeler has not run)")
        return PushResult(pending=pending.height + unknown.height, without_labels=pending.height,
                          seconds=time.perf_counter() - started)
    masked, orphans = masked_items(pending, labels)
    if orphans.height:
        log.warning("%d outbox items have no row in the labels yet: they stay pending", orphans.height)

    tally = _Tally(stop=stop or threading.Event())
    error: str | None = None
    stopped = False
    try:
        client = client or connect(settings)
        for (queue,), group in masked.group_by("queue", maintain_order=True):
            _push_queue(store, client, settings, dataset_name(settings.dataset_prefix, str(queue)), group, tally, say)
    except _StoppedError:
        stopped = True
        log.info("push stopped (shutting down): %d sent, the rest stays pending", tally.sent)
    except ArgillaUnavailableError as exc:
        error = str(exc)
        log.error("push stopped: %s; %d sent, the rest stays pending", error, tally.sent)
        say(f"stopped: {error}")
    result = PushResult(
        sent=tally.sent,
        pending=pending.height + unknown.height - tally.sent,
        rejected=tally.rejected,
        without_labels=orphans.height,
        per_dataset=dict(tally.per_dataset),
        error=error,
        seconds=time.perf_counter() - started,
        stopped=stopped,
    )
    log.info("push: %s", result)
    return result


@dataclass
class _Tally:
    """What this push got confirmed so far (kept when Argilla goes away half-way)."""

    stop: threading.Event
    sent: int = 0
    rejected: int = 0
    per_dataset: dict[str, int] = field(default_factory=dict)


class _StoppedError(Exception):
    """`stop` was set: the push ends between batches."""


def _push_queue(
    store: ObjectStore,
    client: rg.Argilla,
    settings: AnnotationSettings,
    name: str,
    group: pl.DataFrame,
    tally: _Tally,
    say: Progress,
) -> None:
    if tally.stop.is_set():
        raise _StoppedError
    dataset = _retrying(settings, tally.stop, f"dataset {name}", lambda: ensure_dataset(
        client, name=name, workspace=settings.workspace, min_submitted=settings.min_submitted,
        queue=str(group.item(0, "queue")) if group.height else None))
    total, confirmed = group.height, 0
    conversation_field = has_conversation_field(dataset)
    if not conversation_field:
        log.info("dataset %r has the older layout (an `input` text field; Argilla cannot add a field to a "
                 "published dataset): its records show the conversation as text", name)
    started = time.perf_counter()
    say(f"{name}: {total} records to send")
    for offset in range(0, total, settings.batch_size):
        if tally.stop.is_set():
            raise _StoppedError
        batch = group.slice(offset, settings.batch_size)
        payloads = build_records(batch, conversation_field=conversation_field)
        ok_ids = _send_batch(client, settings, tally.stop, dataset.id, name, payloads)
        if ok_ids:
            # Only now, after Argilla answered: a crash before this line leaves the batch pending.
            done = batch.filter(pl.col("interaction_id").is_in(ok_ids))
            mark_sent(store, dataset=name, items=done, sent_at=datetime.now(UTC))
        confirmed += len(ok_ids)
        tally.sent += len(ok_ids)
        tally.rejected += len(payloads) - len(ok_ids)
        tally.per_dataset[name] = confirmed
        rate = confirmed / max(time.perf_counter() - started, 1e-9)
        say(f"{name}: {confirmed}/{total} records confirmed ({rate:.0f} records/s)")


def _send_batch(
    client: rg.Argilla,
    settings: AnnotationSettings,
    stop: threading.Event,
    dataset_id: Any,
    name: str,
    payloads: Sequence[RecordPayload],
) -> list[str]:
    """The interaction ids Argilla confirmed (all of them, or those that pass one by one after a 422)."""
    from argilla._exceptions import UnprocessableEntityError

    models = [_record_model(p) for p in payloads]
    where = f"{name} records {payloads[0].interaction_id}..{payloads[-1].interaction_id}"
    try:
        _retrying(settings, stop, where, _upsert(client, dataset_id, models))
        return [p.interaction_id for p in payloads]
    except UnprocessableEntityError as exc:
        log.warning("Argilla refused a batch of %s (%s): sending it record by record", where, _short(exc))
    ok: list[str] = []
    for payload, model in zip(payloads, models, strict=True):
        try:
            _retrying(settings, stop, f"{name} record {payload.interaction_id}", _upsert(client, dataset_id, [model]))
            ok.append(payload.interaction_id)
        except UnprocessableEntityError as exc:
            log.error("Argilla refused record %s of %s: %s (it stays pending)", payload.interaction_id, name,
                      _short(exc))
    return ok


def _upsert(client: rg.Argilla, dataset_id: Any, models: list[Any]) -> Callable[[], Any]:
    return lambda: client.api.records.bulk_upsert(dataset_id=dataset_id, records=models)


def _record_model(payload: RecordPayload) -> Any:
    from argilla._models import RecordModel

    # no suggestions: Argilla's UI would pre-select one as the answer (layout.py)
    return RecordModel(external_id=payload.interaction_id, fields=dict(payload.fields),
                       metadata=dict(payload.metadata))


def _retrying(settings: AnnotationSettings, stop: threading.Event, what: str, call: Callable[[], T]) -> T:
    """`call`, retried with exponential backoff while Argilla is unreachable; then ArgillaUnavailableError
    (_StoppedError when `stop` is set while waiting)."""
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if attempt == attempts:
                raise ArgillaUnavailableError(
                    f"Argilla at {settings.url} did not answer for {what} after {attempts} attempts: "
                    f"{type(exc).__name__}: {_short(exc)}"
                ) from exc
            delay = settings.retry_backoff_s * 2 ** (attempt - 1)
            log.warning("Argilla did not answer for %s (%s: %s); retry %d/%d in %.1fs", what,
                        type(exc).__name__, _short(exc), attempt, attempts - 1, delay)
            if stop.wait(delay):
                raise _StoppedError from exc
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:300]
