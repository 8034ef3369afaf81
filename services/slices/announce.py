"""Announcing published versions on Kafka, at least once.

A version is announced after its commit: one JSON event keyed by the slice name (or `exports/<kind>`),
carrying the manifest's summary and where to read it (the table and the Delta version of its commit). What
Kafka acknowledged is state in the version's own table: an app transaction `flywheel.announced` whose version
is the last version announced, set by a commit of its own (no rows, the event in its metadata). Versions are
announced in order, so every version above that mark is pending: one published while Kafka was unreachable is
sent by the next publish (or `flywheel slices announce`). The event id is fixed by (root, version, content
hash), so a consumer that sees an event twice can drop the second.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.slices.versions import (
    ATTEMPTS,
    EXPORTS_PREFIX,
    SLICES_PREFIX,
    CommitLostError,
    commit,
    list_roots,
    read_manifest,
    table_of,
)

if TYPE_CHECKING:
    from flywheel_feedback.services.settings import KafkaSettings, SliceSettings

log = logging.getLogger(__name__)

ANNOUNCED_TXN: Final = "flywheel.announced"  # app id: its version is the last version announced
ANNOUNCEMENT_METADATA: Final = "flywheel.announcement"
SCHEMA_VERSION: Final = 2  # 2: the manifest is read from `table` at `table_version` (was a manifest_key)
_NAMESPACE: Final = uuid.UUID("6f1c2a52-8a0e-4c55-9d43-5f0b7d7f3a10")


class Announcer(Protocol):
    topic: str

    def send(self, key: str, event: dict[str, Any]) -> None:
        """Send and wait until the broker acknowledged it (raise otherwise)."""


class KafkaAnnouncer:
    """A kafka-python producer that waits for every announcement's acknowledgement (acks=all)."""

    def __init__(self, kafka: KafkaSettings, *, topic: str, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._producer: Any = None  # connected on first send: an unreachable broker must not block a build

    def send(self, key: str, event: dict[str, Any]) -> None:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                **self._kafka.kafka_python_options(),
                acks="all",
                retries=5,
                request_timeout_ms=int(self._timeout_s * 1000),
                max_block_ms=int(self._timeout_s * 1000),
                bootstrap_timeout_ms=int(self._timeout_s * 1000),
            )
        future = self._producer.send(
            self.topic, key=key.encode(), value=json.dumps(event, sort_keys=True, default=str).encode()
        )
        future.get(timeout=self._timeout_s)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self._timeout_s)
            self._producer = None

    def __enter__(self) -> KafkaAnnouncer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def event_key(root: str) -> str:
    """Slices are keyed by their name (all versions of a slice land in one partition, in order)."""
    return root.split("/", 1)[1] if root.startswith(f"{SLICES_PREFIX}/") else root


def announcement(store: ObjectStore, root: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The event for a published version: what it is, where it is, its hash, and its summary."""
    version = int(manifest["version"])
    kind = "slice" if root.startswith(f"{SLICES_PREFIX}/") else "export"
    event = {
        "event_id": str(uuid.uuid5(_NAMESPACE, f"{root}@v{version}@{manifest['content_hash']}")),
        "type": f"{kind}.published",
        "schema_version": SCHEMA_VERSION,
        "ts": datetime.now(UTC).isoformat(),
        "name": manifest.get("name"),
        "version": version,
        "lake": store.url,
        "table": store.table_uri(root),
        "table_version": manifest.get("table", {}).get("version"),
        "content_hash": manifest["content_hash"],
        "rows": manifest.get("rows"),
        "parent": manifest.get("parent"),
        "created_at": manifest.get("created_at"),
        "counts": {k: v for k, v in manifest.get("counts", {}).items() if k != "by_stratum"},
        "model_versions": manifest.get("model_versions"),
    }
    if kind == "slice":
        event["changes"] = manifest.get("changes")
        drift = manifest.get("drift") or {}
        event["drift"] = {
            side: None if drift.get(side) is None else
            {k: drift[side].get(k) for k in ("divergence", "by_dimension", "uncovered", "stale")}
            for side in ("before", "after")
        }
    else:
        event["export_kind"] = manifest.get("export_kind")
    return event


def announced_version(store: ObjectStore, root: str) -> int:
    """The last version of `root` Kafka acknowledged (0: none)."""
    table = delta.open_table(store, table_of(root))
    return (table.transaction_version(ANNOUNCED_TXN) or 0) if table is not None else 0


def mark_announced(store: ObjectStore, root: str, version: int, event: dict[str, Any], topic: str) -> None:
    """Move the announced mark up to `version` (never down), in a commit of its own."""
    spec = table_of(root)
    details = {"version": version, "event_id": event["event_id"], "topic": topic,
               "announced_at": datetime.now(UTC).isoformat()}
    for _ in range(ATTEMPTS):
        table = delta.open_table(store, spec)
        if table is None:
            raise RuntimeError(f"{root} has no table in {store.url} to mark v{version} announced in")
        if (table.transaction_version(ANNOUNCED_TXN) or 0) >= version:
            return
        try:
            commit(store, spec, table, [], metadata={ANNOUNCEMENT_METADATA: details},
                   transaction=(ANNOUNCED_TXN, version))
        except CommitLostError:
            continue  # a publish or another announcer committed first: look again
        return
    raise RuntimeError(f"{root} v{version} was announced, but {ATTEMPTS} attempts to record it lost to other commits")


def announce(store: ObjectStore, root: str, version: int, announcer: Announcer) -> dict[str, Any]:
    """Send one version's announcement and mark it sent; returns the event."""
    manifest = read_manifest(store, root, version)
    event = announcement(store, root, manifest)
    announcer.send(event_key(root), event)
    mark_announced(store, root, version, event, announcer.topic)
    log.info("announced %s v%d on %s (%s)", root, version, announcer.topic, event["event_id"])
    return event


def unannounced(store: ObjectStore) -> list[tuple[str, int]]:
    """Published versions above their table's announced mark, oldest first per root."""
    pending: list[tuple[str, int]] = []
    for prefix in (SLICES_PREFIX, EXPORTS_PREFIX):
        for root, versions in list_roots(store, prefix).items():
            mark = announced_version(store, root)
            pending.extend((root, v) for v in versions if v > mark)
    return pending


def announce_pending(store: ObjectStore, announcer: Announcer) -> list[dict[str, Any]]:
    """Announce every published version not yet announced; returns the events sent."""
    return [announce(store, root, version, announcer) for root, version in unannounced(store)]


def announcer_from(settings: SliceSettings) -> KafkaAnnouncer | None:
    """The settings' announcer, or None when announcing is off (FLYWHEEL_SLICES_ANNOUNCE=false)."""
    if not settings.announce:
        return None
    return KafkaAnnouncer(settings.kafka, topic=settings.announce_topic, timeout_s=settings.announce_timeout_s)
