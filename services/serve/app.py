"""`flywheel serve`: capture, labeler, annotation sync, slice renewal and lake maintenance in one process.

For small deployments. Each stage runs as it would on its own (the capture consumer on the
event loop, the other stages as periodic work on threads), and the HTTP app (services/gateway/app.py,
uvicorn on a thread of its own) answers /healthz, /metrics, POST /v1/events, the Argilla webhook
(when annotation sync runs with a public URL) and OTLP when present. A failing stage is logged,
counted and retried on its next tick; it never stops the others. SIGTERM answers the requests in
hand, flushes capture and ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
from pydantic import Field
from pydantic_settings import BaseSettings

from flywheel_feedback.services.annotation.receiver import WebhookEndpoint
from flywheel_feedback.services.capture.app import CaptureService
from flywheel_feedback.services.gateway.app import Gateway, build_app, otlp_routes
from flywheel_feedback.services.gateway.server import HttpServer
from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.models.behaviour import check_models
from flywheel_feedback.services.models.metrics import ModelChangeMetrics
from flywheel_feedback.services.serve.metrics import FlywheelMetrics
from flywheel_feedback.services.settings import (
    AnnotationSettings,
    CaptureSettings,
    GatewaySettings,
    KafkaSettings,
    LabelerSettings,
    MaintenanceSettings,
    ModelSettings,
    SliceSettings,
    settings_config,
)

log = logging.getLogger(__name__)

# Stages whose failures show in /healthz's detail but do not make the process unhealthy: a lake that is not
# compacted for a while is slower to read, not broken, and restarting serve would not fix it.
ADVISORY_STAGES = frozenset({"maintenance", "models"})


class ServeSettings(BaseSettings):
    model_config = settings_config("FLYWHEEL_SERVE_")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    label_interval_s: float = Field(30.0, gt=0)
    annotate_interval_s: float = Field(60.0, gt=0)
    renew_interval_s: float = Field(3600.0, gt=0)
    metrics_interval_s: float = Field(5.0, gt=0)
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    labeler: LabelerSettings = Field(default_factory=LabelerSettings)
    # annotation sync runs when an Argilla API key is configured (FLYWHEEL_ARGILLA_API_KEY)
    annotation: AnnotationSettings = Field(default_factory=AnnotationSettings)
    slices: SliceSettings = Field(default_factory=SliceSettings)
    # compaction, vacuum and checkpoints of every table, every maintenance.interval_s (FLYWHEEL_MAINTENANCE_*)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    # POST /v1/events on host:port above (FLYWHEEL_GATEWAY_*; its own host and port are `flywheel gateway`'s)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    # model change alarms on /metrics and the optional webhook (FLYWHEEL_MODELS_*)
    models: ModelSettings = Field(default_factory=ModelSettings)


@dataclass
class _Component:
    name: str
    last_ok: float | None = None
    last_error: str | None = None
    failures_in_a_row: int = 0


@dataclass
class Stage:
    """Periodic work run on a thread: `work()` returns nothing and raises on failure."""

    name: str
    interval_s: float
    work: Callable[[], None]


@dataclass
class FlywheelServer:
    settings: ServeSettings
    store: ObjectStore
    metrics: FlywheelMetrics = field(default_factory=FlywheelMetrics)

    def __post_init__(self) -> None:
        self.capture = CaptureService(self.settings.capture, self.store)
        self.components: dict[str, _Component] = {}
        self._seen_accepted = 0
        self._seen_rejected = 0
        self._seen_flush = (0, 0.0)  # (events, seconds) flushed at the last look
        hook = self.settings.annotation.webhook
        # the handler comes once the webhook is registered with Argilla (_receive_webhooks); 503 until then
        self.webhook = WebhookEndpoint(max_body_bytes=hook.max_body_bytes)
        self.gateway = Gateway(self.settings.gateway, self.metrics.registry)
        self.model_metrics = ModelChangeMetrics(self.metrics.registry)
        routes = [*otlp_routes(self.settings.gateway)]
        if self._receives_webhooks():
            routes.append(self.webhook.route(hook.path))
        app = build_app(health=self.health, metrics=self.metrics.render, gateway=self.gateway, extra_routes=routes)
        self.http = HttpServer(app, host=self.settings.host, port=self.settings.port, name="serve")

    def _receives_webhooks(self) -> bool:
        return self.settings.annotation.api_key is not None and self.settings.annotation.webhook.public_url is not None

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        detail: dict[str, Any] = {}
        ok = True
        for c in self.components.values():
            failing = c.failures_in_a_row >= 3
            ok = ok and (not failing or c.name in ADVISORY_STAGES)
            detail[c.name] = {
                "ok": not failing,
                "seconds_since_success": None if c.last_ok is None else round(now - c.last_ok, 1),
                "last_error": c.last_error,
            }
        return ok, {"status": "ok" if ok else "failing", "components": detail}

    def _succeeded(self, name: str) -> None:
        c = self.components.setdefault(name, _Component(name))
        c.last_ok, c.last_error, c.failures_in_a_row = time.monotonic(), None, 0

    def _failed(self, name: str, error: BaseException) -> None:
        c = self.components.setdefault(name, _Component(name))
        c.last_error, c.failures_in_a_row = f"{type(error).__name__}: {error}", c.failures_in_a_row + 1
        self.metrics.errors.labels(component=name).inc()
        log.warning("%s failed (%d in a row): %s", name, c.failures_in_a_row, error)

    # --- the stages ------------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        labeler = self.settings.labeler
        options = labeler.options()

        def label() -> None:
            result = label_pass(self.store, options=options)
            if result.changed:
                self.metrics.labeled.inc(result.interactions)
                self.metrics.label_passes.inc()
                self.metrics.label_fallback.set(1 if result.label_model_fallback else 0)
                self.metrics.label_rate.set(result.interactions / max(result.seconds, 1e-9))

        stages = [Stage("labeler", self.settings.label_interval_s, label)]
        if self.settings.annotation.api_key is not None:
            stages.append(Stage("annotation", self.settings.annotate_interval_s, self._push))
        stages.append(Stage("queues", self.settings.metrics_interval_s, self._queue_depth))
        if self.settings.slices.definitions_dir.is_dir():
            stages.append(Stage("slices", self.settings.renew_interval_s, self._renew))
        stages.append(Stage("maintenance", self.settings.maintenance.interval_s, self._maintain))
        stages.append(Stage("models", self.settings.models.interval_s, self._check_models))
        return stages

    def _check_models(self) -> None:
        check_models(self.store, self.settings.models, self.model_metrics)

    def _maintain(self) -> None:
        """Compact, vacuum and checkpoint every table (each table's result is logged); a table that failed fails
        the stage, so it is counted and the next run tries again."""
        from flywheel_feedback.services.lake.maintenance import optimize_lake

        settings = self.settings.maintenance
        result = optimize_lake(self.store, retention=settings.retention, force=settings.force,
                               policy=settings.policy())
        log.info("lake maintenance: %s", result.summary())
        if result.failed:
            raise RuntimeError("; ".join(t.summary() for t in result.failed))

    def _push(self) -> None:
        from flywheel_feedback.services.annotation.push import push

        result = push(self.store, self.settings.annotation)
        if result.error is not None:
            raise RuntimeError(f"push stopped, {result.pending} items left pending: {result.error}")

    def _queue_depth(self) -> None:
        from flywheel_feedback.services.annotation.gold import read_gold_responses
        from flywheel_feedback.services.annotation.outbox import pending_items

        pending = pending_items(self.store)
        depth = dict(pending.group_by("queue").agg(pl.len()).iter_rows()) if pending.height else {}
        for queue in {*depth, "uncertain", "suspect", "conflict", "audit", "renewal"}:
            self.metrics.queue_depth.labels(queue=queue).set(depth.get(queue, 0))
        self.metrics.gold.set(read_gold_responses(self.store).height)

    def _renew(self) -> None:
        """Renew every defined slice that drifted or aged past its thresholds; publish and announce."""
        from flywheel_feedback.services.slices.announce import announce_pending, announcer_from
        from flywheel_feedback.services.slices.api import manifest_of
        from flywheel_feedback.services.slices.build import renew
        from flywheel_feedback.services.slices.definitions import load_definitions

        announcer = announcer_from(self.settings.slices)
        now = time.time()
        for name, definition in load_definitions(self.settings.slices.definitions_dir).items():
            result = renew(self.store, definition, announcer=announcer)
            if result.renewed:
                log.info("slice %s v%s published: %s", name, result.version, result.reason)
            drift = result.drift_after or result.drift_before
            if drift is not None:
                self.metrics.slice_drift.labels(slice=name).set(drift.divergence)
            if result.version is not None:
                created = manifest_of(self.store, name).get("created_at")
                if created:
                    age = now - datetime.fromisoformat(created).timestamp()
                    self.metrics.slice_age.labels(slice=name).set(age)
        if announcer is not None:
            announce_pending(self.store, announcer)  # versions published while Kafka was away

    def _receive_webhooks(self, stop: threading.Event) -> None:
        """Register the webhook (its secret arms the route) and reconcile; redone if it fails (Argilla down)."""
        from flywheel_feedback.services.annotation.client import connect
        from flywheel_feedback.services.annotation.receiver import connect_handler, reconcile_until

        settings = self.settings.annotation
        while not stop.is_set():
            try:
                client = connect(settings)
                self.webhook.handler = connect_handler(self.store, settings, client=client)
                reconcile_until(self.store, settings, client=client, stop=stop)
            except Exception as e:
                self._failed("webhooks", e)
                stop.wait(self.settings.annotate_interval_s)

    async def _every(self, stage: Stage) -> None:
        while True:
            try:
                await asyncio.to_thread(stage.work)
                self._succeeded(stage.name)
            except Exception as e:
                self._failed(stage.name, e)
            await asyncio.sleep(stage.interval_s)

    async def _capture_metrics(self) -> None:
        """Capture counts flushes itself; this turns them into metrics and measures the lag."""
        kafka = self.settings.capture.kafka
        while True:
            batcher = self.capture.batcher
            self.metrics.captured.inc(batcher.accepted - self._seen_accepted)
            self.metrics.dead_lettered.inc(batcher.rejected - self._seen_rejected)
            self._seen_accepted, self._seen_rejected = batcher.accepted, batcher.rejected
            flushed = (self.capture.flushed_events, self.capture.flush_seconds)
            events, seconds = flushed[0] - self._seen_flush[0], flushed[1] - self._seen_flush[1]
            self._seen_flush = flushed
            if events:
                self.metrics.capture_rate.set(events / max(seconds, 1e-9))
            try:
                lag = await asyncio.to_thread(
                    consumer_lag, kafka, self.settings.capture.topic, self.settings.capture.group_id
                )
                self.metrics.capture_lag.set(lag)
                self._succeeded("capture")
            except Exception as e:
                self._failed("capture", e)
            await asyncio.sleep(self.settings.metrics_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.http.start)
        log.info("serving /healthz, /metrics and %s on %s", "/v1/events", self.http.url)
        tasks: list[asyncio.Task[None]] = []
        receiver_stop = threading.Event()
        receiver: threading.Thread | None = None
        if self._receives_webhooks():
            receiver = threading.Thread(target=self._receive_webhooks, args=(receiver_stop,), name="webhooks")
            receiver.start()
        try:
            async with self.capture.running():
                jobs: list[Awaitable[None]] = [self._capture_metrics(), *(self._every(s) for s in self.stages())]
                tasks = [asyncio.create_task(j) for j in jobs]  # type: ignore[arg-type]
                await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            receiver_stop.set()
            if receiver is not None:
                await asyncio.to_thread(receiver.join, 30)
            await asyncio.to_thread(self.http.stop)


def consumer_lag(kafka: KafkaSettings, topic: str, group: str) -> int:
    """Events in `topic` that `group` has not committed yet (end offsets minus committed offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    options = kafka.kafka_python_options()
    consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **options)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return 0
        ends = consumer.end_offsets(partitions)
        return sum(max(ends[tp] - (consumer.committed(tp) or 0), 0) for tp in partitions)
    finally:
        consumer.close()


def serve_forever(server: FlywheelServer) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.run(stop)

    asyncio.run(main())
