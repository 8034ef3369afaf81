"""Annotation sync against the real Argilla stack: push throughput, and webhook-to-lake latency.

    python bench/annotation.py [--records 10000] [--batch-size 250] [--baseline-records 2000] [--answers 20]

Needs the stack of `FLYWHEEL_WITH_ARGILLA=1 deploy/stack.sh up` (reads .run/stack.env, or the
FLYWHEEL_TEST_ARGILLA_* variables).

1. Push: a lake with --records labeled interactions (realistic texts, some with personal data to mask) and one
   outbox item each, spread over four queues as the router spreads them, pushed by `flywheel annotate push`'s
   code: mask, build records, create the four datasets, bulk upserts of --batch-size, a MERGE marking each
   confirmed batch sent in the outbox table.
   Baseline, in the same run: the bare SDK (`dataset.records.log`, same batch size) logging the same already
   built records into a fresh dataset, so the ratio is what the sync costs beyond Argilla itself.
2. Latency: the webhook receiver runs on loopback and is registered with Argilla; the annotator submits
   --answers answers one at a time (each waits for the previous to land). Latency is from the annotator's
   request to the answer being committed to the gold table, split into Argilla's part (its rq worker
   delivering) and the receiver's (verify, parse, one Delta MERGE).

Every dataset and webhook it creates is deleted at the end. The last line is
RESULT push_records_per_s=<r/s> baseline_records_per_s=<r/s> webhook_to_lake_p50_s=<s> webhook_to_lake_p95_s=<s>.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the SDK's progress bars (the baseline's records.log)

import polars as pl

from flywheel_feedback.services.annotation.gold import GoldResponse
from flywheel_feedback.services.annotation.layout import QUEUES, dataset_settings
from flywheel_feedback.services.annotation.outbox import enqueue, read_items, read_sent
from flywheel_feedback.services.annotation.push import push
from flywheel_feedback.services.annotation.receiver import WebhookHandler, WebhookServer, register_webhook
from flywheel_feedback.services.annotation.records import build_records, masked_items
from flywheel_feedback.services.lake.labels import read_labels, replace_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.settings import AnnotationSettings
from flywheel_feedback.services.simulator.traffic import planted_card

REPO = Path(__file__).resolve().parent.parent

QUEUE_SHARE = {"uncertain": 0.4, "suspect": 0.3, "conflict": 0.1, "audit": 0.2}
PROMPTS = [
    "How do I reset my password on the mobile app? The link keeps expiring.",
    "Make this e-mail to my landlord sound more polite: the heating is broken again.",
    "git says 'rejected, non-fast-forward' when I push, what should I do?",
    "Summarise the attached contract in three bullet points for my manager.",
]
OUTPUTS = [
    "Open Settings > Account > Reset password. The link is valid for 15 minutes; request a new one if it expires.",
    "Dear Ms. Novak, I hope you are well. I wanted to let you know that the heating has stopped working again.",
    "Run git pull --rebase, resolve any conflicts, then push again.",
    "As an AI language model, I cannot open attachments.",
]
PII = [" Reach me at sam.lee{n}@example.com.", " Call +1 415 555 {n:04d}.", " Card {card}.", ""]


def stack_env() -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k.startswith("FLYWHEEL_TEST_ARGILLA_")}
    env_file = REPO / ".run" / "stack.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("FLYWHEEL_TEST_ARGILLA_"):
                values.setdefault(key.strip(), value.strip())
    needed = ["FLYWHEEL_TEST_ARGILLA_URL", "FLYWHEEL_TEST_ARGILLA_API_KEY", "FLYWHEEL_TEST_ARGILLA_ANNOTATOR_API_KEY"]
    missing = [k for k in needed if not values.get(k)]
    if missing:
        sys.exit(f"missing {missing}: start the stack with FLYWHEEL_WITH_ARGILLA=1 deploy/stack.sh up")
    return values


def build_lake(store: LocalStore, n: int) -> None:
    ids = [f"bench-{k:06d}-{uuid.UUID(int=k).hex[:8]}" for k in range(n)]
    labels = pl.DataFrame({
        "interaction_id": ids,
        "task": ["reply-draft"] * n,
        "model_version": ["2026-11-15" if k % 3 else "2026-11-22" for k in range(n)],
        "input_text": [PROMPTS[k % 4] + PII[k % 7 % 4].format(n=k % 10_000, card=planted_card(k % 10_000))
                       for k in range(n)],
        "output_text": [OUTPUTS[k % 4] for k in range(n)],
        "edited_text": [OUTPUTS[k % 4][:40] + " (edited)" if k % 5 == 0 else None for k in range(n)],
        "correction_text": [None] * n,
        "edit_ratio": [0.35 if k % 5 == 0 else None for k in range(n)],
        "n_retries": [k % 3 for k in range(n)],
        "copied": [k % 2 == 0 for k in range(n)],
        "accepted": [k % 4 == 0 for k in range(n)],
        "rephrase_similarity": [0.8 if k % 6 == 0 else None for k in range(n)],
        "dwell_ms": [float(1000 + k % 9000) for k in range(n)],
        "abandoned_explicit": [k % 11 == 0 for k in range(n)],
        "abandoned_inferred": [k % 13 == 0 for k in range(n)],
        "explicit_label": [(k % 2) if k % 17 == 0 else -1 for k in range(n)],
        "weak_label": [k % 2 for k in range(n)],
        "confidence": [0.5 + (k % 50) / 100 for k in range(n)],
        "label_model_version": ["LabelModel-bench"] * n,
    })
    replace_labels(store, labels)
    queues = [q for q, share in QUEUE_SHARE.items() for _ in range(round(share * n))][:n]
    queues += ["uncertain"] * (n - len(queues))
    enqueue(store, pl.DataFrame({
        "interaction_id": ids, "queue": queues, "reason": ["bench"] * n,
        "priority": [(k % 100) / 100 for k in range(n)]}), source="bench")


def bench_push(settings: AnnotationSettings, store: LocalStore, n: int) -> dict[str, float]:
    started = time.perf_counter()
    last = [0.0]

    def progress(line: str) -> None:
        if time.perf_counter() - last[0] > 10 or "records to send" in line:
            last[0] = time.perf_counter()
            print(f"  [{time.perf_counter() - started:6.1f}s] {line}", flush=True)

    result = push(store, settings, progress=progress)
    seconds = time.perf_counter() - started
    if not result.complete:
        sys.exit(f"push incomplete: {result}")
    assert read_sent(store).height == n
    return {"seconds": seconds, "rps": n / seconds}


def bench_baseline(client: Any, settings: AnnotationSettings, store: LocalStore, n: int) -> dict[str, float]:
    """The bare SDK logging the same records (already masked and built: only Argilla's own cost)."""
    import argilla as rg

    from flywheel_feedback.services.annotation.outbox import pending_items

    items = pending_items(store, resend=True).head(n)
    labels = read_labels(store)
    assert labels is not None
    masked, _ = masked_items(items, labels)
    payloads = build_records(masked)
    dataset = rg.Dataset(name=f"{settings.dataset_prefix}baseline", workspace=settings.workspace,
                         settings=dataset_settings(client, min_submitted=1), client=client).create()
    records = [
        rg.Record(id=p.interaction_id, fields=p.fields, metadata=p.metadata) for p in payloads
    ]
    started = time.perf_counter()
    for start in range(0, len(records), settings.batch_size):
        dataset.records.log(records[start : start + settings.batch_size], batch_size=settings.batch_size)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rps": len(records) / seconds}


def bench_latency(client: Any, env: dict[str, str], settings: AnnotationSettings, store: LocalStore,
                  answers: int) -> dict[str, float]:
    import argilla as rg
    from argilla._models import UserResponseModel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}/argilla-webhook"
    arrived: dict[str, float] = {}
    landed: dict[str, float] = {}
    event = threading.Condition()
    local = threading.local()

    class Timed(WebhookHandler):
        def handle(self, headers: dict[str, str], body: bytes) -> Any:
            local.arrived = time.perf_counter()  # before verification: the receiver's whole part is timed
            return super().handle(headers, body)

    def on_landed(gold: GoldResponse, version: int | None) -> None:
        now = time.perf_counter()  # called once the answer is committed to the gold table
        with event:
            arrived[gold.interaction_id] = local.arrived
            landed[gold.interaction_id] = now
            event.notify_all()

    webhook = register_webhook(client, url, description="flywheel bench")
    server = WebhookServer(Timed(store, secret=webhook.secret, prefix=settings.dataset_prefix,
                                 tolerance_s=300, on_landed=on_landed),
                           host="127.0.0.1", port=port, path="/argilla-webhook", max_body_bytes=1 << 20).start()
    try:
        annotator = rg.Argilla(api_url=env["FLYWHEEL_TEST_ARGILLA_URL"],
                               api_key=env["FLYWHEEL_TEST_ARGILLA_ANNOTATOR_API_KEY"])
        me = annotator.me
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = client.datasets(name=f"{settings.dataset_prefix}audit", workspace=settings.workspace)
        targets = [(r.id, r._server_id) for r, _ in zip(dataset.records(batch_size=answers), range(answers),
                                                       strict=False)]
        total: list[float] = []
        argilla_part: list[float] = []
        receiver_part: list[float] = []
        for iid, server_id in targets:
            sent = time.perf_counter()
            annotator.api.records.create_record_response(server_id, UserResponseModel(
                values={"quality": {"value": "good"}}, status="submitted", user_id=me.id))
            with event:
                if not event.wait_for(_landed(landed, iid), timeout=60):
                    sys.exit(f"no webhook for {iid} within 60 s: is the rq worker running?")
            total.append(landed[iid] - sent)
            argilla_part.append(arrived[iid] - sent)
            receiver_part.append(landed[iid] - arrived[iid])
    finally:
        server.stop()
        webhook.delete()
    q = statistics.quantiles(total, n=20) if len(total) >= 2 else total * 19
    return {"p50": statistics.median(total), "p95": q[18], "max": max(total),
            "argilla_p50": statistics.median(argilla_part), "receiver_p50": statistics.median(receiver_part)}


def _landed(landed: dict[str, float], iid: str) -> Any:
    return lambda: iid in landed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--baseline-records", type=int, default=2_000)
    parser.add_argument("--answers", type=int, default=20)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    env = stack_env()
    prefix = f"fw-bench-{uuid.uuid4().hex[:8]}-"
    settings = AnnotationSettings(url=env["FLYWHEEL_TEST_ARGILLA_URL"], api_key=env["FLYWHEEL_TEST_ARGILLA_API_KEY"],
                                  dataset_prefix=prefix, batch_size=args.batch_size)
    from flywheel_feedback.services.annotation.client import connect

    client = connect(settings)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        build_lake(store, args.records)
        t0 = time.perf_counter()
        labels = read_labels(store)
        assert labels is not None
        masked, _ = masked_items(read_items(store), labels)
        build_records(masked)
        local_s = time.perf_counter() - t0
        try:
            print(f"push: {args.records} records in batches of {args.batch_size} to 4 queue datasets ...", flush=True)
            pushed = bench_push(settings, store, args.records)
            print(f"  {pushed['rps']:.0f} records/s ({pushed['seconds']:.1f}s; masking and building the records "
                  f"alone: {local_s:.2f}s)")
            print(f"baseline: bare SDK records.log of {args.baseline_records} built records ...", flush=True)
            base = bench_baseline(client, settings, store, args.baseline_records)
            print(f"  {base['rps']:.0f} records/s ({base['seconds']:.1f}s)")
            print(f"latency: {args.answers} annotator answers, each to a gold-table commit ...", flush=True)
            lat = bench_latency(client, env, settings, store, args.answers)
            print(f"  webhook-to-lake p50 {lat['p50']:.3f}s, p95 {lat['p95']:.3f}s, max {lat['max']:.3f}s "
                  f"(Argilla's worker p50 {lat['argilla_p50']:.3f}s, receiver p50 {lat['receiver_p50'] * 1000:.1f}ms)")
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name in [*QUEUES, "baseline"]:
                    dataset = client.datasets(name=f"{prefix}{name}", workspace=settings.workspace)
                    if dataset is not None:
                        dataset.delete()
    print(f"RESULT push_records_per_s={pushed['rps']:.0f} baseline_records_per_s={base['rps']:.0f} "
          f"ratio={pushed['rps'] / base['rps']:.2f} webhook_to_lake_p50_s={lat['p50']:.3f} "
          f"webhook_to_lake_p95_s={lat['p95']:.3f}")


if __name__ == "__main__":
    main()
