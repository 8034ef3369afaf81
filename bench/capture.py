"""Capture throughput against a bare aiokafka consumer, on the same broker and the same topic.

    python bench/capture.py [--events 1000000] [--bootstrap HOST:PORT]

Fills a fresh 3-partition topic with ~600-byte events, then, each in its own child process:
a bare aiokafka consumer reads the topic (getmany, no processing), and the capture service
(FastStream, validation, Parquet to a local lake, offsets committed) consumes it in a fresh
group. Rates are counted from the first message received to the last one durable. The
capture child also reports its peak RSS, for a quarter of the stream and for all of it:
memory must follow the batch size, not the stream. Without --bootstrap it reads
.run/stack.env (deploy/stack.sh up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPT = "How do I reset my password on the mobile app? I tried twice already and the link keeps expiring. "
OUTPUT = (
    "Open Settings > Account > Reset password. The link is valid for 15 minutes, so open it on the same device "
    "right after you request it; if it expires, request a new one. "
)


def event(i: int) -> tuple[bytes, bytes]:
    iid = f"i-{i // 3:09d}-{uuid.UUID(int=i).hex[:12]}"
    body = {
        "event_id": f"e-{i:010d}-{uuid.UUID(int=i * 7 + 1).hex}",
        "type": "interaction",
        "schema_version": 1,
        "ts": f"2026-11-27T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "interaction_id": iid,
        "session_id": f"s-{i // 10:08d}",
        "user_id": f"u-{i % 5000:06d}",
        "app": "support-bot",
        "task": "reply-draft",
        "model": {"id": "support-llm", "version": "2026-11-15", "provider": "internal"},
        "input": {"prompt": PROMPT + str(i)},
        "output": OUTPUT + str(i),
        "latency_ms": 500 + i % 700,
        "metadata": {"segment": "pro", "locale": "en-US"},
    }
    return iid.encode(), json.dumps(body, separators=(",", ":")).encode()


def bootstrap_from_stack() -> str:
    env = REPO / ".run" / "stack.env"
    for line in env.read_text().splitlines() if env.exists() else []:
        if line.startswith("FLYWHEEL_TEST_KAFKA_BOOTSTRAP="):
            return line.split("=", 1)[1].strip()
    sys.exit("no broker: pass --bootstrap or run deploy/stack.sh up")


def fill(bootstrap: str, topic: str, events: int) -> int:
    from confluent_kafka import Producer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    # librdkafka fills the topic fastest; how it was filled does not matter to the readers.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "1"})
    size = 0
    for i in range(events):
        key, value = event(i)
        size += len(value)
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 200_000 == 0 and i:
            print(f"  produced {i}", flush=True)
    producer.flush()
    return size // max(events, 1)


# --- child roles -------------------------------------------------------------------------------


async def bare_aiokafka(bootstrap: str, topic: str, events: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=50 << 20)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    await consumer.seek_to_beginning()
    seen = 0
    first = 0.0
    while seen < events:
        batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
        for records in batches.values():
            if records and not first:
                first = time.perf_counter()
            seen += len(records)
    elapsed = time.perf_counter() - first
    await consumer.stop()
    return {"eps": seen / elapsed, "seconds": elapsed}


async def capture(bootstrap: str, topic: str, events: int, batch_size: int) -> dict[str, float]:
    from services.capture.app import CaptureService
    from services.lake.store import LocalStore
    from services.settings import CaptureSettings, KafkaSettings, LakeSettings

    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    settings = CaptureSettings(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group_id=f"{topic}-capture-{uuid.uuid4().hex[:6]}",
        batch_size=batch_size,
        flush_interval_s=5.0,
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        lake=LakeSettings(url=str(lake)),
    )
    service = CaptureService(settings, LocalStore(lake))
    first = 0.0
    original = service.batcher.add

    async def timed_add(records):  # type: ignore[no-untyped-def]
        nonlocal first
        if not first:
            first = time.perf_counter()
        await original(records)

    service.batcher.add = timed_add  # type: ignore[method-assign]
    async with service.running():
        while service.batcher.accepted + service.batcher.rejected < events:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - first
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    files = sum(1 for _ in lake.rglob("*.parquet"))
    return {"eps": events / elapsed, "seconds": elapsed, "peak_rss_mb": peak_mb, "files": files}


def child(role: str, bootstrap: str, topic: str, events: int, batch_size: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--topic", topic,
           "--events", str(events), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--role", choices=["aiokafka", "capture"])
    parser.add_argument("--topic")
    args = parser.parse_args()

    if args.role:  # a child: one measurement, printed as JSON
        os.environ.setdefault("POLARS_MAX_THREADS", "2")
        runner = bare_aiokafka(args.bootstrap, args.topic, args.events) if args.role == "aiokafka" else capture(
            args.bootstrap, args.topic, args.events, args.batch_size
        )
        print(json.dumps(asyncio.run(runner)))
        return

    bootstrap = args.bootstrap or bootstrap_from_stack()
    topic = f"bench-capture-{uuid.uuid4().hex[:8]}"
    print(f"filling {topic} with {args.events} events at {bootstrap} ...", flush=True)
    started = time.perf_counter()
    size = fill(bootstrap, topic, args.events)
    print(f"  {args.events} events of ~{size} bytes in {time.perf_counter() - started:.1f}s")

    print("bare aiokafka consumer (baseline) ...", flush=True)
    base = child("aiokafka", bootstrap, topic, args.events, args.batch_size)
    print(f"  {base['eps']:,.0f} events/s")
    print("capture: validate, Parquet, commit ...", flush=True)
    cap = child("capture", bootstrap, topic, args.events, args.batch_size)
    print(f"  {cap['eps']:,.0f} events/s, peak RSS {cap['peak_rss_mb']:.0f} MB, {cap['files']:.0f} files")
    quarter = max(args.events // 4, 1)
    small = child("capture", bootstrap, topic, quarter, args.batch_size)
    print(f"  peak RSS for {quarter} events: {small['peak_rss_mb']:.0f} MB "
          f"(for {args.events}: {cap['peak_rss_mb']:.0f} MB; batch size {args.batch_size})")
    ratio = cap["eps"] / base["eps"]
    print(f"RESULT capture_eps={cap['eps']:.0f} aiokafka_eps={base['eps']:.0f} ratio={ratio:.2f} "
          f"peak_rss_mb={cap['peak_rss_mb']:.0f}")


if __name__ == "__main__":
    main()
