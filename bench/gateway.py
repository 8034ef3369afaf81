"""The HTTP gateway's throughput into Kafka beside a bare confluent-kafka producer, and its latency.

    python bench/gateway.py [--events 200000] [--batch 100] [--clients 8] [--latency-requests 2000]
                            [--repeat 2] [--bootstrap HOST:PORT]

The same ~700-byte interaction events go, in turns (producer, gateway, producer, gateway, ...), to two fresh
3-partition topics on the same broker:

- a bare confluent-kafka producer (librdkafka, acks=all, idempotent, as fast as it goes), timed from the first
  produce to the end of flush() (everything acknowledged);
- `flywheel gateway` in a child process, fed by `--clients` concurrent httpx clients on keep-alive connections in
  another child process, each POSTing JSON arrays of `--batch` events to /v1/events; timed from the first
  request to the last answer (the gateway answers once Kafka acknowledged every event of a request).

Each also reports the CPU it used per event (the gateway process's, the producer process's with librdkafka's
threads): on a shared machine that depends far less on other jobs than a rate does.

Then single-event requests, one at a time on one keep-alive connection: p50 and p99 of the round trip (validation,
produce, Kafka's acknowledgement, answer). The rates compared are the medians of the runs. The last line is
`RESULT gateway_eps=<x> producer_eps=<x> ratio=<x> p99_ms=<x>`. Without --bootstrap it reads .run/stack.env
(deploy/stack.sh up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_traffic import bootstrap_from_stack, interaction  # a sibling: bench/ is on the path of a script there

# the parent makes the key; its client child inherits it
KEY = os.environ.setdefault("BENCH_GATEWAY_KEY", "sk_bench_" + uuid.uuid4().hex)

def event(i: int, run: str) -> dict[str, object]:
    return interaction(i, event_id=f"{run}-e{i:010d}", interaction_id=f"{run}-i{i // 3:09d}")


def create_topic(bootstrap: str, name: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(names)
    finally:
        admin.close()


def on_topic(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return int(sum(consumer.end_offsets(parts).values()))
    finally:
        consumer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc), its children not included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_producer(bootstrap: str, topic: str, events: list[dict[str, object]]) -> tuple[float, float]:
    from confluent_kafka import Producer

    values = [(str(e["interaction_id"]).encode(), json.dumps(e, separators=(",", ":")).encode()) for e in events]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    producer.list_topics(topic, timeout=10)  # connected and the metadata known before the clock starts
    failures: list[object] = []

    def delivered(error: object, _: object) -> None:
        if error is not None:
            failures.append(error)

    started, cpu = time.perf_counter(), time.process_time()
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu  # librdkafka's threads included
    if failures:
        sys.exit(f"the bare producer failed: {failures[0]}")
    return len(values) / seconds, cpu / len(values) * 1e6


# --- the gateway, and its clients in a child process of their own ----------------------------------------


def start_gateway(bootstrap: str, topic: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FLYWHEEL_CAPTURE_TOPIC": topic,
           "FLYWHEEL_GATEWAY_PORT": str(port),
           "FLYWHEEL_GATEWAY_SERVER_KEYS": json.dumps([{"id": "bench", "key": KEY}])}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "flywheel_feedback.services.cli", "gateway"], env=env,
                                   stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the gateway did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


async def post_batches(url: str, bodies: list[bytes], clients: int) -> tuple[float, int]:
    import httpx

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    accepted = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            while True:
                answer = await http.post("/v1/events", content=body, headers=headers)
                if answer.status_code == 200:
                    accepted += answer.json()["accepted"]
                    break
                if answer.status_code != 503:
                    raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
                await asyncio.sleep(0.05)  # backpressure: the gateway said retry

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        await http.get("/healthz")
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - started, accepted


def single_requests(url: str, bodies: list[bytes]) -> list[float]:
    import httpx

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        http.get("/healthz")
        for body in bodies:
            started = time.perf_counter()
            answer = http.post("/v1/events", content=body, headers=headers)
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
    return times


def client_role(args: argparse.Namespace) -> None:
    """The child process that loads the gateway: prints one JSON line with what it measured."""
    run = uuid.uuid4().hex[:8]
    events = [event(i, run) for i in range(args.events)]
    if args.mode == "batches":
        bodies = [json.dumps(events[i : i + args.batch]).encode() for i in range(0, len(events), args.batch)]
        cpu = time.process_time()
        seconds, accepted = asyncio.run(post_batches(args.url, bodies, args.clients))
        print(json.dumps({"seconds": seconds, "accepted": accepted, "client_cpu_s": time.process_time() - cpu}))
    else:
        times = single_requests(args.url, [json.dumps(e).encode() for e in events])
        print(json.dumps({"times": times}))


def run_clients(url: str, mode: str, args: argparse.Namespace, events: int) -> dict[str, object]:
    command = [sys.executable, __file__, "--role", "clients", "--url", url, "--mode", mode, "--events", str(events),
               "--batch", str(args.batch), "--clients", str(args.clients)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"the clients failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--latency-requests", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, in turns")
    parser.add_argument("--bootstrap")
    parser.add_argument("--role", choices=["clients"])
    parser.add_argument("--url")
    parser.add_argument("--mode", choices=["batches", "single"])
    args = parser.parse_args()
    if args.role == "clients":
        client_role(args)
        return
    bootstrap = args.bootstrap or bootstrap_from_stack()
    run = uuid.uuid4().hex[:8]
    topics = [f"bench-gw-{run}", f"bench-producer-{run}"]
    for topic in topics:
        create_topic(bootstrap, topic)
    events = [event(i, run) for i in range(args.events)]
    producer_rates: list[float] = []
    gateway_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gateway.log"
        process, url = start_gateway(bootstrap, topics[0], log)
        try:
            for n in range(args.repeat):
                rate, cpu_us = bare_producer(bootstrap, topics[1], events)
                producer_rates.append(rate)
                print(f"run {n + 1}: bare confluent-kafka producer {rate:,.0f} events/s, {cpu_us:.1f} us CPU/event",
                      flush=True)
                cpu = cpu_seconds(process.pid)
                measured = run_clients(url, "batches", args, args.events)
                cpu_us = (cpu_seconds(process.pid) - cpu) / args.events * 1e6
                seconds, accepted = float(str(measured["seconds"])), int(str(measured["accepted"]))
                if accepted != args.events:
                    sys.exit(f"the gateway accepted {accepted} of {args.events} events")
                gateway_rates.append(accepted / seconds)
                print(f"run {n + 1}: gateway, {args.clients} clients x batches of {args.batch}: "
                      f"{gateway_rates[-1]:,.0f} events/s, {cpu_us:.1f} us of the gateway's CPU/event "
                      f"(one core: {1e6 / cpu_us:,.0f} events/s; the clients used "
                      f"{float(str(measured['client_cpu_s'])) / seconds:.0%} of a core)", flush=True)
            single = run_clients(url, "single", args, args.latency_requests)
        finally:
            process.terminate()
            process.wait(60)
    times = sorted(float(t) for t in single["times"])  # type: ignore[attr-defined]
    p50, p99 = statistics.median(times) * 1000, times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
    landed = on_topic(bootstrap, topics[0])
    expected = args.events * args.repeat + args.latency_requests
    print(f"single-event requests ({len(times)}, one keep-alive connection): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"on the gateway's topic: {landed} of {expected} events")
    delete_topics(bootstrap, topics)
    gateway_eps, producer_eps = statistics.median(gateway_rates), statistics.median(producer_rates)
    ratio = gateway_eps / producer_eps
    print(f"RESULT gateway_eps={gateway_eps:.0f} producer_eps={producer_eps:.0f} ratio={ratio:.3f} p99_ms={p99:.2f}")


if __name__ == "__main__":
    main()
