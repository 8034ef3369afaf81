"""`flywheel serve`: capture, labeler, annotation sync, slice renewal and lake maintenance in one process.

For small deployments. Each stage runs as it would on its own (the capture consumer on the
event loop, the other stages as periodic work on threads), and the HTTP app (services/gateway/app.py,
uvicorn on a thread of its own) answers /livez, /readyz, /healthz, /metrics, POST /v1/events, the Argilla
webhook (when annotation sync runs with a public URL) and OTLP when present.

Health (services/serve/health.py): /livez is the event loop's heartbeat; /readyz is Kafka, the lake and Argilla
(when configured) reachable, each probed on a thread of its own every `probe_interval_s`; /healthz is both and
no stage failing. A failing stage is logged, counted and retried with exponential backoff (capped, never later
than its interval); it never stops the others.

SIGTERM (or SIGINT): /readyz answers 503, the stages stop taking work (a push ends after the batch in flight,
the rest stays pending in the outbox), capture flushes and commits what it holds, the webhook registered with
Argilla is deleted, and the process exits within `grace_s`; what did not finish by then is abandoned (and said
so in the final log line), which loses nothing: capture's commits are exactly once through Delta app
transactions, and a push marks items sent only after Argilla confirmed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from flywheel_feedback.services.serve.health import Dependencies, Heartbeat, describe_error, retry_delay
from flywheel_feedback.services.serve.metrics import FlywheelMetrics
from flywheel_feedback.services.settings import (
    AnnotationSettings,
    CaptureSettings,
    GatewaySettings,
    LabelerSettings,
    MaintenanceSettings,
    ModelSettings,
    SliceSettings,
    settings_config,
)
from flywheel_feedback.services.slices.definitions import SliceDefinition, load_definitions

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
    # SIGTERM to exit: stop taking work, flush, deregister; what is not done by then is abandoned (and retried
    # by the next run). Under Kubernetes' default terminationGracePeriodSeconds (30).
    grace_s: float = Field(10.0, gt=0)
    probe_interval_s: float = Field(2.0, gt=0, description="how often Kafka, the lake and Argilla are probed")
    probe_timeout_s: float = Field(2.0, gt=0)
    retry_backoff_s: float = Field(1.0, gt=0, description="a failed stage runs again after this, doubling")
    retry_backoff_max_s: float = Field(60.0, gt=0)
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
        self.capture = CaptureService(self.settings.capture, self.store, observer=self.metrics)
        self.components: dict[str, _Component] = {}
        self._stop = threading.Event()  # set at shutdown: the stages, the pushes and the receiver stop
        self.draining = False
        self.heartbeat = Heartbeat()
        self.dependencies = Dependencies(self._probes(), interval_s=self.settings.probe_interval_s,
                                         timeout_s=self.settings.probe_timeout_s)
        self.pushed = 0  # items Argilla confirmed during this run
        self.pending: int | None = None  # outbox items not sent, at the last count
        self._registered_webhooks: list[Any] = []
        self.abandoned: list[str] = []  # what shutdown gave up on when the grace period ran out
        hook = self.settings.annotation.webhook
        # the handler comes once the webhook is registered with Argilla (_receive_webhooks); 503 until then
        self.webhook = WebhookEndpoint(max_body_bytes=hook.max_body_bytes)
        self.gateway = Gateway(self.settings.gateway, self.metrics.registry)
        self.model_metrics = ModelChangeMetrics(self.metrics.registry)
        self.metrics.readiness(lambda: self.readiness()[0])  # and, read at each scrape, dependency_up
        routes = [*otlp_routes(self.gateway, self.metrics.otlp)]
        if self._receives_webhooks():
            routes.append(self.webhook.route(hook.path))
        app = build_app(health=self.health, live=self.liveness, ready=self.readiness, metrics=self.metrics.render,
                        gateway=self.gateway, extra_routes=routes)
        self.http = HttpServer(app, host=self.settings.host, port=self.settings.port, name="serve",
                               graceful_s=self.settings.grace_s / 2)

    def _receives_webhooks(self) -> bool:
        return self.settings.annotation.api_key is not None and self.settings.annotation.webhook.public_url is not None

    def _probes(self) -> dict[str, Callable[[], None]]:
        from flywheel_feedback.services.serve.probes import KafkaProbe, argilla_probe, lake_probe

        capture, timeout = self.settings.capture, self.settings.probe_timeout_s
        probes: dict[str, Callable[[], None]] = {
            "kafka": KafkaProbe(capture.kafka, topic=capture.topic, group=capture.group_id, timeout_s=timeout,
                                on_lag=self.metrics.capture_lag.set),
            "lake": lake_probe(self.store, timeout_s=timeout),
        }
        if self.settings.annotation.api_key is not None:
            probes["argilla"] = argilla_probe(self.settings.annotation.url, timeout_s=timeout)
        return probes

    # --- health ----------------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        live, detail = self.heartbeat.liveness()
        return live, {"status": "ok" if live else "failing", "event_loop": detail}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready, detail = self.dependencies.readiness()
        for name, check in detail.items():
            self.metrics.dependency_up.labels(dependency=name).set(1 if check["ok"] else 0)
        reasons = [check["reason"] for check in detail.values() if not check["ok"]]
        if self.draining:
            ready, reasons = False, ["shutting down", *reasons]
        return ready, {"status": "ready" if ready else "not ready", "reasons": reasons, "dependencies": detail}

    def stage_health(self) -> tuple[bool, dict[str, Any]]:
        """No stage failing (three failures in a row; advisory stages only show)."""
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
        return ok, detail

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Live, ready, and no stage failing."""
        live, live_detail = self.liveness()
        ready, ready_detail = self.readiness()
        stages_ok, stages = self.stage_health()
        ok = live and ready and stages_ok
        return ok, {"status": "ok" if ok else "failing", "live": live_detail, "ready": ready_detail,
                    "components": stages}

    def _succeeded(self, name: str) -> None:
        c = self.components.setdefault(name, _Component(name))
        c.last_ok, c.last_error, c.failures_in_a_row = time.monotonic(), None, 0

    def _failed(self, name: str, error: BaseException) -> None:
        c = self.components.setdefault(name, _Component(name))
        c.last_error, c.failures_in_a_row = describe_error(error), c.failures_in_a_row + 1
        self.metrics.errors.labels(component=name).inc()
        log.warning("%s failed (%d in a row): %s", name, c.failures_in_a_row, c.last_error)

    def _retry_in(self, name: str, interval_s: float) -> float:
        c = self.components.get(name)
        return retry_delay(0 if c is None else c.failures_in_a_row, base_s=self.settings.retry_backoff_s,
                           cap_s=self.settings.retry_backoff_max_s, interval_s=interval_s)

    # --- the stages ------------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        labeler = self.settings.labeler
        options = labeler.options()

        def label() -> None:
            with self.metrics.label_pass_seconds.time():
                result = label_pass(self.store, options=options)
            if result.changed:
                self.metrics.labeled.inc(result.interactions)
                self.metrics.label_passes.inc()
                self.metrics.label_fallback.set(1 if result.label_model_fallback else 0)

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

        with self.metrics.push_seconds.time():
            result = push(self.store, self.settings.annotation, stop=self._stop)
        self.metrics.pushed.inc(result.sent)
        self.pushed += result.sent
        self.pending = result.pending
        if result.error is not None:
            raise RuntimeError(f"push stopped, {result.pending} items left pending: {result.error}")

    def _queue_depth(self) -> None:
        from flywheel_feedback.services.annotation.gold import read_gold_responses
        from flywheel_feedback.services.annotation.outbox import pending_items

        pending = pending_items(self.store)
        self.pending = pending.height
        depth = dict(pending.group_by("queue").agg(pl.len()).iter_rows()) if pending.height else {}
        for queue in {*depth, "uncertain", "suspect", "conflict", "audit", "renewal"}:
            self.metrics.queue_depth.labels(queue=queue).set(depth.get(queue, 0))
        self.metrics.gold.set(read_gold_responses(self.store).height)

    def _renew(self) -> None:
        """Renew every defined slice that drifted or aged past its thresholds; publish and announce. Timed; the
        slices' ages are read from the lake after it, whether it failed or not."""
        definitions = load_definitions(self.settings.slices.definitions_dir)
        try:
            with self.metrics.renewal_seconds.time():
                self._renew_each(definitions)
        finally:
            self._slice_ages(list(definitions))

    def _renew_each(self, definitions: dict[str, SliceDefinition]) -> None:
        from flywheel_feedback.services.slices.announce import announce_pending, announcer_from
        from flywheel_feedback.services.slices.build import renew

        announcer = announcer_from(self.settings.slices)
        for name, definition in definitions.items():
            result = renew(self.store, definition, announcer=announcer)
            if result.renewed:
                log.info("slice %s v%s published: %s", name, result.version, result.reason)
            if result.published:
                self.metrics.slice_versions.labels(slice=name).inc()
            drift = result.drift_after or result.drift_before
            if drift is not None:
                self.metrics.slice_drift.labels(slice=name).set(drift.divergence)
        if announcer is not None:
            announce_pending(self.store, announcer)  # versions published while Kafka was away

    def _slice_ages(self, names: list[str]) -> None:
        """Each slice's publishing time from its versions table, after every renewal, failed ones too (a version
        published before the failure, or by another process, still counts); unreadable, the last ones stay."""
        from flywheel_feedback.services.slices.versions import latest_published_at, slice_root

        for name in names:
            try:
                at = latest_published_at(self.store, slice_root(name))
            except Exception as e:
                log.warning("slice %s: its versions could not be read for its age: %s", name, e)
                continue
            if at is not None:
                self.metrics.slice_published(name, at)

    def _receive_webhooks(self) -> None:
        """Register the webhook (its secret arms the route) and reconcile; redone with backoff if it fails."""
        from flywheel_feedback.services.annotation.client import connect
        from flywheel_feedback.services.annotation.receiver import connect_handler, reconcile_until

        settings = self.settings.annotation
        while not self._stop.is_set():
            try:
                client = connect(settings)
                self.webhook.handler = connect_handler(self.store, settings, client=client,
                                                       on_registered=self._registered_webhooks.append)
                self._succeeded("webhooks")
                reconcile_until(self.store, settings, client=client, stop=self._stop)
            except Exception as e:
                self._failed("webhooks", e)
                self._stop.wait(self._retry_in("webhooks", self.settings.annotate_interval_s))

    def _every(self, stage: Stage) -> None:
        """A stage's thread: run, then wait its interval (after a failure, the backoff) until the stop."""
        while not self._stop.is_set():
            try:
                stage.work()
                self._succeeded(stage.name)
            except Exception as e:
                self._failed(stage.name, e)
            self._stop.wait(self._retry_in(stage.name, stage.interval_s))

    async def _beat(self) -> None:
        while True:
            self.heartbeat.beat()
            await asyncio.sleep(1.0)

    async def run(self, stop: asyncio.Event) -> None:
        self.dependencies.start()
        await asyncio.to_thread(self.http.start)
        log.info("serving /livez, /readyz, /healthz, /metrics and %s on %s", "/v1/events", self.http.url)
        threads = [threading.Thread(target=self._every, args=(s,), name=s.name, daemon=True) for s in self.stages()]
        if self._receives_webhooks():
            threads.append(threading.Thread(target=self._receive_webhooks, name="webhooks", daemon=True))
        capture = self.capture.running()
        await capture.__aenter__()
        tasks = [asyncio.create_task(self._beat())]
        for thread in threads:
            thread.start()
        try:
            await stop.wait()
        finally:
            await self._shut_down(capture, tasks, threads)

    async def _shut_down(self, capture: contextlib.AbstractAsyncContextManager[Any],
                         tasks: list[asyncio.Task[None]], threads: list[threading.Thread]) -> None:
        """Stop taking work, flush, deregister, within the grace period; say what was done and what was not."""
        started = time.monotonic()
        # a margin for what follows the shutdown (the interpreter's exit), so the process is gone within grace_s
        deadline = started + self.settings.grace_s - min(1.5, self.settings.grace_s / 5)

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self.draining = True  # /readyz answers 503 from now on
        self._stop.set()
        log.info("shutting down within %.0fs: no new work; flushing capture", self.settings.grace_s)
        abandoned: list[str] = []
        before = self.capture.batcher.written
        try:
            # the consumer stops; what it holds is written and committed (what it polled after is read again)
            await asyncio.wait_for(capture.__aexit__(None, None, None), timeout=left())
        except TimeoutError:
            abandoned.append("capture flush (its events are read again from Kafka by the next run)")
        flushed_at_exit = self.capture.batcher.written - before
        for task in tasks:
            task.cancel()
        for thread in threads:
            await asyncio.to_thread(thread.join, left())
            if thread.is_alive():
                abandoned.append(f"{thread.name} (its work in flight is redone by the next run)")
        for webhook in self._registered_webhooks:
            if not await _within(left(), _unregister, webhook):
                abandoned.append(f"deleting the webhook for {webhook.url}")
        self.dependencies.stop()
        await asyncio.to_thread(self.http.stop, left())
        pending = "unknown" if self.pending is None else str(self.pending)
        log.info("stopped in %.1fs: %d events written to the lake this run (%d flushed at exit), %d items pushed "
                 "to Argilla, %s left pending in the outbox; abandoned: %s", time.monotonic() - started,
                 self.capture.batcher.written, flushed_at_exit, self.pushed, pending,
                 "; ".join(abandoned) if abandoned else "nothing")
        self.abandoned = abandoned


def _unregister(webhook: Any) -> None:
    from flywheel_feedback.services.annotation.receiver import unregister_webhook

    unregister_webhook(webhook)


async def _within(seconds: float, call: Callable[[Any], None], arg: Any) -> bool:
    """`call(arg)` on a daemon thread, waited for at most `seconds`: True if it finished."""
    thread = threading.Thread(target=call, args=(arg,), daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join, seconds)
    return not thread.is_alive()


def serve_forever(server: FlywheelServer) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.run(stop)

    runner = asyncio.Runner()
    runner.run(main())
    if server.abandoned:
        # The grace period is over: closing the loop would wait for the abandoned work (a writer retrying an
        # unreachable lake, the consumer's poll), and nothing it holds is lost by ending here.
        logging.shutdown()
        os._exit(0)
    runner.close()
