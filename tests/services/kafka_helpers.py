"""Helpers for the capture integration tests: events to send, a capture run, lake checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import polars as pl

from flywheel_feedback.services.capture.app import CaptureObserver, CaptureService
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.settings import CaptureSettings, KafkaSettings, LakeSettings


def event_bytes(i: int, *, run: str) -> tuple[str, bytes]:
    iid = f"{run}-i{i // 3}"
    body: dict[str, object]
    if i % 3 == 0:
        body = {
            "event_id": f"{run}-e{i}",
            "type": "interaction",
            "ts": "2026-11-27T10:00:00Z",
            "interaction_id": iid,
            "session_id": "s",
            "user_id": "u",
            "app": "a",
            "task": "t",
            "model": {"id": "m", "version": "1"},
            "input": {"prompt": f"question {i}"},
            "output": f"answer {i}",
        }
    else:
        body = {
            "event_id": f"{run}-e{i}",
            "type": "dwell",
            "ts": "2026-11-27T10:00:01Z",
            "interaction_id": iid,
            "dwell_ms": i,
        }
    return iid, json.dumps(body).encode()


def capture_settings(bootstrap: str, topic: str, lake_url: str, **overrides: object) -> CaptureSettings:
    options: dict[str, object] = {
        "topic": topic,
        "dlq_topic": f"{topic}.dlq",
        "group_id": f"{topic}-capture",
        "batch_size": 2000,
        "flush_interval_s": 0.5,
        "kafka": KafkaSettings(bootstrap_servers=bootstrap),
        "lake": LakeSettings(url=lake_url),
    }
    options.update(overrides)
    return CaptureSettings(**options)  # type: ignore[arg-type]


def capture_until(
    settings: CaptureSettings,
    store: ObjectStore,
    done: Callable[[], bool],
    *,
    timeout_s: float = 60.0,
    observer: CaptureObserver | None = None,
) -> CaptureService:
    """Run a capture service in this process until `done()` holds, then stop it cleanly."""

    async def run() -> CaptureService:
        service = CaptureService(settings, store, observer)
        async with service.running():
            deadline = time.monotonic() + timeout_s
            while not done():
                if time.monotonic() > deadline:
                    raise TimeoutError("capture did not finish in time")
                await asyncio.sleep(0.2)
        return service

    return asyncio.run(run())


def lake_count(store: ObjectStore) -> int:
    return read_events(store).height


def lake_ids(store: ObjectStore) -> pl.Series:
    return read_events(store).get_column("event_id")
