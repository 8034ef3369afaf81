"""Onto Kafka: the gateway's producer (aiokafka, idempotent, acks=all), answered only once Kafka acknowledged.

Why aiokafka: the gateway runs on uvicorn's event loop, and aiokafka's producer is asyncio-native (a send is a
future the request awaits, no thread per request and no bridge from callbacks), and it is already a dependency
(FastStream's Kafka broker). kafka-python's producer would block the loop or need a thread hop per event.

An event is `accepted` once Kafka acknowledged it. An event Kafka did not acknowledge within `ack_timeout_s` is
`unavailable` (the client gets a 503 and retries), and may still be acknowledged later: aiokafka keeps retrying
a batch it has sent, with the same idempotent sequence. So the producer remembers event ids: a retry of an event
still on its way waits for that same delivery, and a retry of one already acknowledged is answered `duplicate`
without producing it again. (Several gateway replicas do not share this memory; readers of the lake deduplicate
by event_id for what is sent twice anyway.)

A failed delivery restarts the producer: aiokafka fails a batch it could not place while a partition had no
leader (Kafka stopped), and its idempotent producer then fails every later batch of that partition with
OutOfOrderSequenceNumber, for good. A new producer (a new producer id) starts from sequence 0, so the broker
would not recognise a resend of an old batch. And a failed delivery is not proof that nothing was written: a
broker shutting down can append a batch and close the connection before it answers. So every event whose
delivery failed, or was still on its way when its producer was replaced, is in doubt, with the partition it went
to and an offset it cannot sit before (the partition's end when its producer connected, or past the last offset
acknowledged before it was sent). Before the new producer takes any request, the gateway reads those partitions
back from there to their end: an event in doubt found there is acknowledged (its retry is answered `duplicate`),
one not found was not written and is produced again on retry. Until that is done, requests get a 503.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.partitioner import murmur2

from flywheel_feedback.services.gateway.backpressure import Admission, Hold
from flywheel_feedback.services.gateway.body import event_id_of
from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.settings import KafkaSettings

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "duplicate", "unavailable"]


@dataclass(frozen=True, slots=True)
class Record:
    event_id: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Landing:
    """Where a record sent can be: its partition, at `floor` or later."""

    partition: int
    floor: int


@dataclass(frozen=True, slots=True)
class Sending:
    generation: int
    future: asyncio.Future[Any]
    landing: Landing


@dataclass(frozen=True, slots=True)
class Delivered:
    outcome: Outcome
    reason: str | None = None


class Publisher:
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        admission: Admission,
        ack_timeout_s: float,
        linger_ms: int = 0,
        remember: int = 200_000,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.topic = topic
        self.admission = admission
        self.ack_timeout_s = ack_timeout_s
        self._kafka = kafka
        self._linger_ms = linger_ms
        self._remember = remember
        self._metrics = metrics
        self._producer: Any = None
        self._connecting: asyncio.Task[None] | None = None
        self._generation = 0  # producers started so far; a pending delivery of an older one is not waited for
        self._pending: dict[str, Sending] = {}
        self._acked: OrderedDict[str, None] = OrderedDict()
        self._in_doubt: dict[str, Landing] = {}
        self._floor: dict[int, int] = {}  # partition -> no record this gateway sends from now on lands before it
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect in the background: until Kafka answers, requests get a 503 (the gateway still starts)."""
        self._connecting = asyncio.create_task(self._connect(), name="gateway-kafka-connect")

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer

        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                **self._kafka.aiokafka_options(),
                client_id="flywheel-gateway",
                enable_idempotence=True,
                acks="all",
                linger_ms=self._linger_ms,
                max_batch_size=512 * 1024,
                request_timeout_ms=int(self.ack_timeout_s * 1000),
            )
            try:
                await producer.start()
                await self._settle_doubts(producer)
            except Exception as e:
                log.warning("cannot reach Kafka at %s (%s: %s); retrying in %.1fs",
                            self._kafka.bootstrap_servers, type(e).__name__, e, delay)
                await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._generation += 1
            self._producer = producer
            log.info("producing to %s at %s", self.topic, self._kafka.bootstrap_servers)
            return

    async def _restart(self, error: BaseException) -> None:
        """A delivery failed: replace the producer (see the module's docstring)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return  # restarting already
        log.warning("Kafka failed a delivery to %s (%s: %s): restarting the producer", self.topic,
                    type(error).__name__, error)
        try:
            await asyncio.wait_for(producer.stop(), max(self.ack_timeout_s, 1.0))
        except Exception as e:
            log.warning("the failed producer did not stop cleanly (%s: %s)", type(e).__name__, e)
        # What the old producer had on its way is in doubt; a success reported late takes it out again.
        for event_id, sending in list(self._pending.items()):
            if sending.generation == self._generation:
                del self._pending[event_id]
                self._in_doubt[event_id] = sending.landing
        self._connecting = asyncio.create_task(self._connect(), name="gateway-kafka-reconnect")

    async def _settle_doubts(self, producer: Any) -> None:
        """Read back the partitions of the events in doubt (see the module's docstring), and set each partition's
        floor to its end: what this producer sends lands there or later."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        reader = AIOKafkaConsumer(**self._kafka.aiokafka_options(), client_id="flywheel-gateway-readback",
                                  enable_auto_commit=False, auto_offset_reset="earliest")
        await reader.start()
        try:
            known = await producer.partitions_for(self.topic) if self.topic in await reader.topics() else None
            if not known:
                if self._in_doubt:
                    raise RuntimeError(f"cannot read back topic {self.topic}: Kafka knows no partitions of it")
                return  # not created yet: nothing was sent to it, and every floor is its start
            partitions = [TopicPartition(self.topic, p) for p in sorted(known)]
            ends = {tp.partition: offset for tp, offset in (await reader.end_offsets(partitions)).items()}
            if self._in_doubt:  # nothing adds to it meanwhile: no producer is set, and the old one's are moved
                found = await _read_back(reader, self.topic, ends, self._in_doubt)
                log.warning("%d deliveries were in doubt after Kafka failed: %d had landed (their retries are "
                            "answered duplicate), %d had not (they are produced again on retry)",
                            len(self._in_doubt), len(found), len(self._in_doubt) - len(found))
                self._in_doubt.clear()
                for event_id in found:
                    self._acknowledged(event_id)
            self._floor = ends
        finally:
            await reader.stop()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Deliver what is still on its way (bounded), then close. Nothing left undelivered was acknowledged."""
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        for task in list(self._restarts):
            task.cancel()
        producer, self._producer = self._producer, None
        if producer is None:
            return
        unsettled = len(self._pending)
        try:
            await asyncio.wait_for(producer.stop(), timeout_s)
        except TimeoutError:
            log.warning("Kafka did not settle %d deliveries in %.0fs at shutdown; their clients got a 503",
                        unsettled, timeout_s)

    async def publish(
        self, records: Sequence[Record], hold: Hold, *, headers: list[tuple[str, bytes]]
    ) -> list[Delivered]:
        """Produce `records` and wait up to `ack_timeout_s` for Kafka; one result per record, in order.

        `hold` (the request's admission) is released once every delivery it started has settled."""
        producer = self._producer
        if producer is None:
            self.admission.release(hold)
            return [Delivered("unavailable", "not connected to Kafka yet")] * len(records)
        self.admission.producing(hold)
        started = time.monotonic()
        deadline = started + self.ack_timeout_s
        results: list[Delivered | None] = [None] * len(records)
        waits: dict[int, asyncio.Future[Any]] = {}
        mine: list[asyncio.Future[Any]] = []
        generation = self._generation
        todo: list[tuple[int, Record]] = []
        for i, record in enumerate(records):
            if record.event_id in self._acked:
                results[i] = Delivered("duplicate")
                continue
            if record.event_id in self._in_doubt:  # not read back yet (only between a failure and the restart)
                results[i] = Delivered("unavailable", "Kafka failed this event's delivery; retry")
                continue
            on_its_way = self._pending.get(record.event_id)
            if on_its_way is not None and on_its_way.generation == generation:
                waits[i] = on_its_way.future  # a retry of an event on its way: wait for that delivery
            else:
                todo.append((i, record))
        try:
            async with asyncio.timeout(self.ack_timeout_s):  # one timer for every send, not one per event
                partitions = sorted(await producer.partitions_for(self.topic))
                # One record at a time, not a record batch per request: aiokafka sends one request per broker at
                # a time, with one batch per partition, so the records of all the requests in hand share the
                # partition's open batch and go in one round trip (batches of requests would queue one by one).
                for i, record in todo:
                    partition = partitions[_key_hash(record.key) % len(partitions)]  # as Kafka's clients pick it
                    future = await producer.send(self.topic, record.value, key=record.key, partition=partition,
                                                 headers=headers)
                    sending = Sending(generation, future, Landing(partition, self._floor.get(partition, 0)))
                    self._pending[record.event_id] = sending
                    future.add_done_callback(functools.partial(self._settled, record.event_id, sending))
                    waits[i] = future
                    mine.append(future)
        except Exception as e:  # what the producer did not take was not sent: a retry cannot duplicate it
            self.admission.failed()
            what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            for i, _ in todo:
                if i not in waits:
                    results[i] = Delivered("unavailable", f"Kafka did not take the event ({what})")
        if mine:
            everything = asyncio.gather(*mine, return_exceptions=True)
            everything.add_done_callback(lambda _: self._release(hold, started))
        else:
            self._release(hold, None)
        if waits:
            await asyncio.wait(set(waits.values()), timeout=max(deadline - time.monotonic(), 0.0))
        for i, future in waits.items():
            results[i] = _result(future, self.ack_timeout_s)
        return [r or Delivered("unavailable", "not produced") for r in results]

    def _release(self, hold: Hold, started: float | None) -> None:
        self.admission.release(hold)
        if started is not None and self._metrics is not None:
            self._metrics.ack_seconds.observe(time.monotonic() - started)

    def _settled(self, event_id: str, sending: Sending, future: asyncio.Future[Any]) -> None:
        current = self._pending.get(event_id) is sending
        if current:
            del self._pending[event_id]
        error = asyncio.CancelledError() if future.cancelled() else future.exception()
        if error is None:
            offset = future.result().offset
            partition = sending.landing.partition
            self._floor[partition] = max(self._floor.get(partition, 0), offset + 1)
            self._acknowledged(event_id)
            return
        # Not current: the restart already held it in doubt and read it back, or a newer send replaced it.
        if current and event_id not in self._acked:
            self._in_doubt[event_id] = sending.landing
        self.admission.failed()
        generation = sending.generation
        if generation == self._generation and self._producer is not None:
            task = asyncio.get_running_loop().create_task(self._restart(error), name="gateway-kafka-restart")
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    def _acknowledged(self, event_id: str) -> None:
        self._in_doubt.pop(event_id, None)
        if self._remember:
            self._acked[event_id] = None
            if len(self._acked) > self._remember:
                self._acked.popitem(last=False)


async def _read_back(reader: Any, topic: str, ends: dict[int, int], in_doubt: dict[str, Landing]) -> set[str]:
    """The event ids in doubt that are on `topic`, reading each doubted partition from its lowest floor to `ends`."""
    from aiokafka import TopicPartition

    starts: dict[int, int] = {}
    for doubt in in_doubt.values():
        starts[doubt.partition] = min(starts.get(doubt.partition, doubt.floor), doubt.floor)
    todo = {TopicPartition(topic, p): ends[p] for p, start in starts.items() if start < ends[p]}
    reader.assign(list(todo))
    for tp in todo:
        reader.seek(tp, starts[tp.partition])
    found: set[str] = set()
    while todo:
        batches = await reader.getmany(*todo, timeout_ms=1000)
        for tp, messages in batches.items():
            for message in messages:
                event_id = event_id_of(message.value)
                if event_id in in_doubt and in_doubt[event_id].partition == tp.partition:
                    found.add(event_id)
        for tp in list(todo):
            if await reader.position(tp) >= todo[tp]:
                del todo[tp]
    return found


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    """Kafka's default partitioner hash (murmur2, positive): aiokafka's is pure Python, and an interaction's
    events come in several requests with the same key."""
    return int(murmur2(key)) & 0x7FFFFFFF


def _result(future: asyncio.Future[Any], timeout_s: float) -> Delivered:
    if not future.done():
        return Delivered("unavailable", f"Kafka did not acknowledge within {timeout_s:g}s; retry (a retry is not "
                                        "produced twice)")
    if future.cancelled():
        return Delivered("unavailable", "the delivery was cancelled")
    error = future.exception()
    if error is not None:
        return Delivered("unavailable", f"Kafka refused the event ({type(error).__name__}: {error})")
    return Delivered("accepted")
