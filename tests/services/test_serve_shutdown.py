"""SIGTERM to `flywheel serve` in the middle of a push to the real Argilla: the process exits within its grace
period (FLYWHEEL_SERVE_GRACE_S, 10 s by default), every item it marked sent is in Argilla, the rest stays
pending in the outbox, and a later push sends them: nothing is lost. And the webhook: a stale one with serve's
URL (left by a process that did not stop cleanly) is replaced at start, and serve's own is deleted at exit."""

from __future__ import annotations

import signal
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import SecretStr

from flywheel_feedback.services.annotation.layout import QUEUES
from flywheel_feedback.services.annotation.outbox import pending_items, read_sent
from flywheel_feedback.services.annotation.push import push
from flywheel_feedback.services.annotation.receiver import EVENTS
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.settings import AnnotationSettings
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig
from tests.conftest import free_port, require

from .serve_helpers import start_serve, stop_serve, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.argilla, pytest.mark.slow]

GRACE_S = 10.0  # the default


Item = tuple[str, str]  # (interaction_id, queue): an outbox item, and a record of that queue's dataset


def items(frame: pl.DataFrame) -> set[Item]:
    return set(frame.select("interaction_id", "queue").iter_rows())


def records_in_argilla(owner: Any, prefix: str) -> list[Item]:
    found: list[Item] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for queue in QUEUES:
            dataset = owner.datasets(name=f"{prefix}{queue}", workspace="default")
            if dataset is not None:
                found += [(record.id, queue) for record in dataset.records(batch_size=500)]
    return found


def our_webhooks(owner: Any, url: str) -> list[Any]:
    return [w for w in owner.webhooks if w.url == url]


def test_sigterm_during_a_push_exits_within_the_grace_period_and_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    import argilla as rg

    argilla_url, api_key = require("FLYWHEEL_TEST_ARGILLA_URL"), require("FLYWHEEL_TEST_ARGILLA_API_KEY")
    simulate_to_file(SimulationConfig(interactions=1000, seed=41), tmp_path / "events.jsonl", tmp_path / "t.parquet")
    store = LocalStore(tmp_path / "lake")
    capture_file(tmp_path / "events.jsonl", store)
    label_pass(store)
    queued = items(pending_items(store))
    assert len(queued) >= 100, len(queued)

    prefix = f"fw-stop-{uuid.uuid4().hex[:8]}-"
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/argilla-webhook"
    owner = rg.Argilla(api_url=argilla_url, api_key=api_key)
    stale = rg.Webhook(url=hook_url, events=list(EVENTS), description="left by a serve that was killed",
                       _client=owner).create()
    env = {
        "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLYWHEEL_CAPTURE_TOPIC": kafka_topic,
        "FLYWHEEL_CAPTURE_DLQ_TOPIC": f"{kafka_topic}.dlq",
        "FLYWHEEL_CAPTURE_GROUP_ID": f"{kafka_topic}-serve",
        "FLYWHEEL_LAKE_URL": str(store.root),
        "FLYWHEEL_ARGILLA_URL": argilla_url,
        "FLYWHEEL_ARGILLA_API_KEY": api_key,
        "FLYWHEEL_ARGILLA_DATASET_PREFIX": prefix,
        "FLYWHEEL_ARGILLA_BATCH_SIZE": "4",  # a push of many small batches: SIGTERM lands in the middle of it
        "FLYWHEEL_WEBHOOK_PUBLIC_URL": hook_url,
        "FLYWHEEL_SLICES_DEFINITIONS_DIR": str(tmp_path / "no-slices"),
        "FLYWHEEL_SERVE_PORT": str(port),
        "FLYWHEEL_SERVE_ANNOTATE_INTERVAL_S": "1",
    }
    log = tmp_path / "serve.log"
    process = start_serve(env, log)
    try:
        def replaced() -> bool:
            hooks = our_webhooks(owner, hook_url)
            return len(hooks) == 1 and hooks[0].id != stale.id

        wait_for("the stale webhook replaced by serve's own", replaced, 90, log, every_s=0.5)

        def pushing() -> bool:
            return 0 < pending_items(store).height < len(queued)

        wait_for("a push under way", pushing, 90, log, every_s=0.1)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(GRACE_S + 20) == 0, log.read_text()[-4000:]
        took = time.monotonic() - signalled
        print(f"SIGTERM during a push: exited in {took:.1f}s (grace {GRACE_S:.0f}s)")
        assert took <= GRACE_S, f"exited {took:.1f}s after SIGTERM\n{log.read_text()[-4000:]}"
        final = log.read_text().strip().splitlines()[-1]
        assert "stopped in" in final and "items pushed to Argilla" in final and "left pending" in final, final

        assert our_webhooks(owner, hook_url) == []  # serve's own deleted at exit; Argilla stops delivering
        left, sent = items(pending_items(store)), items(read_sent(store))
        assert left, "the push finished before SIGTERM: nothing was interrupted"
        assert sent | left == queued and not sent & left
        assert sent <= set(records_in_argilla(owner, prefix))  # marked sent only once Argilla had them

        settings = AnnotationSettings(url=argilla_url, api_key=SecretStr(api_key), dataset_prefix=prefix)
        assert push(store, settings).complete  # a later run sends what was left
        assert sorted(records_in_argilla(owner, prefix)) == sorted(queued)  # every item, once
        assert pending_items(store).height == 0
    finally:
        stop_serve(process)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for queue in QUEUES:
                dataset = owner.datasets(name=f"{prefix}{queue}", workspace="default")
                if dataset is not None:
                    dataset.delete()
            for webhook in our_webhooks(owner, hook_url):
                webhook.delete()
