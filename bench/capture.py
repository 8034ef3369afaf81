"""Capture throughput against a bare aiokafka consumer, on the same broker and the same topic.

    python bench/capture.py [--events 1000000] [--batch-size 50000] [--repeat 2] [--bootstrap HOST:PORT]

Fills a fresh 3-partition topic with ~700-byte events, then runs, each in its own child process
and in turns (aiokafka, capture, aiokafka, capture, ...) so that both see the same machine:
a bare aiokafka consumer that reads the topic (getmany, no processing), and the capture
service (FastStream, validation, a Delta commit per flush to a local lake, offsets committed) in a fresh group.
Both children measure the same way: from the moment the first records are in hand to the
moment the last event is done (received for aiokafka; durable and committed for capture),
and both report the CPU seconds their process used in that window, which depend far less
on other jobs on the machine than rates do. The rates compared are the medians of the runs.
The stream's end is a shutdown for capture: once every record is polled it flushes what it
holds, as on SIGTERM, instead of idling until the flush interval writes the last partial
batches (up to 5 s, which is latency, not throughput).

Memory: the capture child reports its peak RSS. It is measured for a quarter of the stream
and for all of it, at --batch-size and at a fifth of it: memory must follow the batch size,
not the length of the stream. The last line is
`RESULT capture_eps=... aiokafka_eps=... ratio=... peak_rss_mb=...` (peak RSS of the full
stream at --batch-size). Without --bootstrap it reads .run/stack.env (deploy/stack.sh up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_traffic import REPO, bootstrap_from_stack, interaction  # a sibling: bench/ is on the path of a script there


def event(i: int) -> tuple[bytes, bytes]:
    iid = f"i-{i // 3:09d}-{uuid.UUID(int=i).hex[:12]}"
    body = interaction(i, event_id=f"e-{i:010d}-{uuid.UUID(int=i * 7 + 1).hex}", interaction_id=iid)
    return iid.encode(), json.dumps(body, separators=(",", ":")).encode()


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


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _window(events: int, first: float, cpu_at_first: float) -> dict[str, float]:
    """The figures of one child: from the first records in hand until the last event is done."""
    elapsed = time.perf_counter() - first
    cpu = _cpu_seconds() - cpu_at_first
    return {
        "eps": events / elapsed,
        "seconds": elapsed,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / events * 1e6,
        "load": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def bare_aiokafka(bootstrap: str, topic: str, events: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=50 << 20)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    await consumer.seek_to_beginning()
    seen = 0
    first = cpu_at_first = 0.0
    while seen < events:
        batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
        for records in batches.values():
            if records and not first:
                first, cpu_at_first = time.perf_counter(), _cpu_seconds()
            seen += len(records)
    result = _window(seen, first, cpu_at_first)
    await consumer.stop()
    return result


async def capture(bootstrap: str, topic: str, events: int, batch_size: int) -> dict[str, float]:
    from flywheel_feedback.services.capture.app import CaptureService
    from flywheel_feedback.services.lake.store import LocalStore
    from flywheel_feedback.services.settings import CaptureSettings, KafkaSettings, LakeSettings

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
    first = cpu_at_first = 0.0
    polled = 0
    original = service.batcher.add

    async def timed_add(records):  # type: ignore[no-untyped-def]
        nonlocal first, cpu_at_first, polled
        if not first:
            first, cpu_at_first = time.perf_counter(), _cpu_seconds()
        polled += len(records)
        await original(records)

    service.batcher.add = timed_add  # type: ignore[method-assign]
    try:
        async with service.running():
            while polled < events:
                await asyncio.sleep(0.01)
            # The stream ends here: flush what is buffered as a shutdown does, rather than
            # idle until the flush interval writes the last partial batches.
            await service.batcher.close()
            done = service.batcher.accepted + service.batcher.rejected  # the last poll may go past `events`
            if done < events:
                raise RuntimeError(f"captured {service.batcher.accepted} and rejected {service.batcher.rejected}")
            result = _window(done, first, cpu_at_first)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # closing included
        result["files"] = sum(1 for _ in lake.rglob("*.parquet"))
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    return result


def drop(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic, f"{topic}.dlq"])
    except Exception as e:  # the RESULT line stays the last line of stdout
        print(f"could not delete {topic}: {e}", file=sys.stderr)
    finally:
        admin.close()


def child(role: str, bootstrap: str, topic: str, events: int, batch_size: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--topic", topic,
           "--events", str(events), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def describe(run: dict[str, float]) -> str:
    return (f"{run['eps']:>9,.0f} events/s in {run['seconds']:5.1f}s, {run['cpu_us_per_event']:5.1f} CPU-us/event, "
            f"peak RSS {run['peak_rss_mb']:4.0f} MB, load {run['load']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each consumer, in turns")
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
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    try:
        measure(args, bootstrap, topic)
    finally:
        drop(bootstrap, topic)  # a million events take ~0.7 GB of the broker's disk


def measure(args: argparse.Namespace, bootstrap: str, topic: str) -> None:
    print(f"filling {topic} with {args.events} events at {bootstrap} ...", flush=True)
    started = time.perf_counter()
    size = fill(bootstrap, topic, args.events)
    print(f"  {args.events} events of ~{size} bytes in {time.perf_counter() - started:.1f}s")

    print(f"throughput, {args.repeat} runs each, in turns (capture: batch size {args.batch_size}) ...", flush=True)
    bases: list[dict[str, float]] = []
    caps: list[dict[str, float]] = []
    for _ in range(args.repeat):
        bases.append(child("aiokafka", bootstrap, topic, args.events, args.batch_size))
        print(f"  aiokafka {describe(bases[-1])}", flush=True)
        caps.append(child("capture", bootstrap, topic, args.events, args.batch_size))
        print(f"  capture  {describe(caps[-1])}, {caps[-1]['files']:.0f} files", flush=True)
    base_eps = statistics.median(r["eps"] for r in bases)
    cap_eps = statistics.median(r["eps"] for r in caps)
    peak = max(r["peak_rss_mb"] for r in caps)

    print("capture peak RSS by stream length and batch size ...", flush=True)
    quarter = max(args.events // 4, 1)
    small_batch = max(args.batch_size // 5, 1)
    rss = {(args.events, args.batch_size): peak}
    for events, batch in ((quarter, args.batch_size), (quarter, small_batch), (args.events, small_batch)):
        rss[events, batch] = child("capture", bootstrap, topic, events, batch)["peak_rss_mb"]
    for batch in (args.batch_size, small_batch):
        print(f"  batch size {batch:>7}: {rss[quarter, batch]:4.0f} MB for {quarter} events, "
              f"{rss[args.events, batch]:4.0f} MB for {args.events}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"RESULT capture_eps={cap_eps:.0f} aiokafka_eps={base_eps:.0f} ratio={cap_eps / base_eps:.2f} "
          f"peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()
