"""Data retention: how long the lake keeps raw text at all (MaintenanceSettings' `*_ttl`), enforced by every
maintenance run (`flywheel lake optimize`, `flywheel serve`) before it compacts.

- raw events older than `raw_events` (by event time) are deleted: a Delta DELETE on `ts`, whose predicate is only
  a timestamp. Files wholly older are removed without a rewrite (a commit of removes only, which the labeler's
  incremental read passes over: services/lake/delta.py `added_files`); a file straddling the cutoff is
  rewritten without its older rows; younger files are not touched.
- gold answers submitted longer ago than `gold` are deleted the same way (on `submitted_at`).
- dead-letter files of file capture written longer ago than `dead_letters` are deleted
  (services/lake/dead_letters.py); Kafka's dead-letter topic expires by its own `retention.ms`.

What the derived tables need they hold already, masked: label rows keep their features, votes, gold label and
masked text when their raw events expire (a full relabel can only relabel what raw still holds), and every slice
and export version holds a masked copy of its rows. Deleted rows leave the table at once and the disk at the next
vacuum past the maintenance retention (`retention`, 7 days by default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flywheel_feedback.services.lake import dead_letters, delta
from flywheel_feedback.services.lake.delta import TableSpec
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import DEAD_LETTER_PREFIX, GOLD, RAW_EVENTS

log = logging.getLogger(__name__)

# what each time to live applies to: the table and its time column
EXPIRING: dict[str, tuple[TableSpec, str]] = {"raw_events": (RAW_EVENTS, "ts"), "gold": (GOLD, "submitted_at")}


@dataclass(frozen=True)
class RetentionPolicy:
    """How long rows are kept (None: forever)."""

    raw_events: timedelta | None = None
    dead_letters: timedelta | None = None
    gold: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("raw_events", "dead_letters", "gold"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise ValueError(f"expected a positive time to live for {name}, got {value}")


@dataclass(frozen=True)
class Expired:
    """What one time to live deleted."""

    table: str
    before: datetime
    rows: int  # rows deleted (dead letters: files)
    error: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.table}: expiring what is older than {self.before.isoformat()} failed: {self.error}"
        unit = "files" if self.table == DEAD_LETTER_PREFIX else "rows"
        return f"{self.table}: {self.rows} {unit} older than {self.before.isoformat()} expired"


def enforce(
    store: ObjectStore, policy: RetentionPolicy, *, tables: set[str] | None = None, now: datetime | None = None
) -> list[Expired]:
    """Delete what `policy` no longer keeps (only from `tables`, when named); a failure is reported in the
    result and the other tables go on."""
    now = now or datetime.now(UTC)
    found = []
    for name, (spec, column) in EXPIRING.items():
        ttl = getattr(policy, name)
        if ttl is not None and (tables is None or spec.name in tables):
            found.append(_expire(store, spec, column, before=now - ttl))
    if policy.dead_letters is not None and (tables is None or DEAD_LETTER_PREFIX in tables):
        before = now - policy.dead_letters
        try:
            found.append(Expired(DEAD_LETTER_PREFIX, before, dead_letters.expire(store, before=before)))
        except Exception as e:  # the store away: reported, the next run tries again
            found.append(Expired(DEAD_LETTER_PREFIX, before, 0, error=f"{type(e).__name__}: {e}"))
    return found


def _expire(store: ObjectStore, spec: TableSpec, column: str, *, before: datetime) -> Expired:
    from deltalake import CommitProperties

    try:
        table = delta.open_table(store, spec)
        if table is None:
            return Expired(spec.name, before, 0)
        if delta.ensure_configuration(store, spec):  # a rewrite records statistics of `stats` columns only
            table = delta.open_table(store, spec)
            assert table is not None
        cutoff = before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        metrics = table.delete(f"{column} < '{cutoff}'",
                               commit_properties=CommitProperties(max_commit_retries=20))
        rows = int(metrics.get("num_deleted_rows", 0))
        if rows:
            log.info("%s: %d rows older than %s expired", spec.name, rows, cutoff)
        return Expired(spec.name, before, rows)
    except Exception as e:  # a conflict, the store away: reported, the next run tries again
        return Expired(spec.name, before, 0, error=f"{type(e).__name__}: {e}")
