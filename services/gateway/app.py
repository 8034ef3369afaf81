"""The one ASGI app for everything flywheel serves over HTTP, run by `flywheel gateway`, `flywheel serve` and
`flywheel annotate serve` (each with the routes it has):

    GET  /livez        200 while the process works (its event loop answers), else 503; JSON
    GET  /readyz       200 while it can take work (its dependencies answer), else 503 with the reasons; JSON
    GET  /healthz      200 while healthy (live, ready and, for serve, no stage failing), else 503; JSON
    GET  /metrics      Prometheus text format
    POST /v1/events    events onto Kafka (events.py), with CORS preflights for browser keys
    POST <webhook>     Argilla's signed webhooks (services/annotation/receiver.py), when the process lands them
    POST /v1/traces    OTLP/HTTP, from `services.gateway.otlp_route.otlp_routes(settings, keys=, metrics=,
                       otlp_metrics=, on_stop=)` when that module exists (the gateway's server keys, its
                       metrics; what it registers with on_stop runs when the gateway stops)

Routes passed as `extra_routes` are mounted as they are; during a request, `request.app.state.gateway` is the
process's Gateway (its publisher produces onto Kafka with the same backpressure), or None.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.gateway.backpressure import Admission
from flywheel_feedback.services.gateway.events import PATH, EventsEndpoint
from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.gateway.producer import Publisher
from flywheel_feedback.services.otlp.metrics import OtlpMetrics
from flywheel_feedback.services.process_metrics import build_info, ready_gauge
from flywheel_feedback.services.settings import GatewaySettings

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTLP_MODULE = "flywheel_feedback.services.gateway.otlp_route"


class Gateway:
    """Event ingestion: the /v1/events route and the producer behind it (started with the app)."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        try:
            self.keys = settings.keyring()
        except ValueError as exc:  # duplicate keys, a browser key without a token secret, a bad keys file
            raise FlywheelError(f"gateway keys: {exc}") from exc
        self.metrics = GatewayMetrics(registry)
        admission = Admission(
            max_bytes=settings.max_in_flight_bytes,
            max_requests=settings.max_in_flight_requests,
            stall_s=settings.stall_s,
            cooldown_s=settings.retry_after_s,
            retry_after_s=settings.retry_after_s,
        )
        self.publisher = Publisher(
            settings.kafka,
            topic=settings.topic,
            admission=admission,
            ack_timeout_s=settings.ack_timeout_s,
            linger_ms=settings.linger_ms,
            remember=settings.remember_events,
            metrics=self.metrics,
        )
        self.events = EventsEndpoint(
            self.keys,
            self.publisher,
            self.metrics,
            max_event_bytes=settings.max_event_bytes,
            max_body_bytes=settings.max_body_bytes,
            max_batch_events=settings.max_batch_events,
        )
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.metrics.in_flight_bytes.set_function(lambda: admission.bytes)
        self.metrics.in_flight_requests.set_function(lambda: admission.requests)
        if not len(self.keys):
            log.info("no gateway keys configured: /v1/events refuses every request (FLYWHEEL_GATEWAY_*_KEYS)")

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.events.handle, methods=["POST", "OPTIONS"])]

    def health(self) -> dict[str, Any]:
        return {"ok": self.publisher.ready, "kafka": "connected" if self.publisher.ready else "connecting",
                "in_flight_requests": self.publisher.admission.requests}

    async def start(self) -> None:
        await self.publisher.start()

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Have `close` run when the gateway stops (the OTLP route's producer)."""
        self._on_stop.append(close)

    async def stop(self) -> None:
        try:
            await self.publisher.stop(timeout_s=max(self.settings.ack_timeout_s * 2, 5.0))
        finally:
            for close in self._on_stop:
                try:
                    await close()
                except Exception:  # one failing close must not keep the others from running
                    log.exception("closing %r when the gateway stopped failed", close)


def build_app(
    *,
    health: Health,
    metrics: Callable[[], bytes],
    live: Health | None = None,
    ready: Health | None = None,
    gateway: Gateway | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    def answer(check: Health) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ok, detail = check()
            return JSONResponse(detail, status_code=200 if ok else 503)

        return endpoint

    async def prometheus(request: Request) -> Response:
        return Response(metrics(), media_type=METRICS_CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gateway is not None:
            await gateway.start()
        try:
            yield
        finally:
            if gateway is not None:
                await gateway.stop()

    # without checks of their own: a process that answers is live, and ready when healthy
    routes: list[BaseRoute] = [Route("/healthz", answer(health), methods=["GET"]),
                               Route("/livez", answer(live or _alive), methods=["GET"]),
                               Route("/readyz", answer(ready or health), methods=["GET"]),
                               Route("/metrics", prometheus, methods=["GET"])]
    if gateway is not None:
        routes.extend(gateway.routes())
    routes.extend(extra_routes)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


def _alive() -> tuple[bool, dict[str, Any]]:
    return True, {"status": "ok"}


def registry_metrics(registry: CollectorRegistry) -> Callable[[], bytes]:
    return lambda: generate_latest(registry)


def otlp_routes(gateway: Gateway, otlp_metrics: OtlpMetrics | None = None) -> list[BaseRoute]:
    """The OTLP routes (POST /v1/traces) if this installation has them, else none; they take the gateway's keys and
    count what they take and drop into `otlp_metrics`."""
    try:
        module = importlib.import_module(OTLP_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != OTLP_MODULE:
            raise
        return []
    from flywheel_feedback.services.settings import OtlpSettings

    # the traces' interactions go where the gateway's events go, through the same broker
    settings = gateway.settings
    otlp = OtlpSettings(topic=settings.topic, kafka=settings.kafka, max_event_bytes=settings.max_event_bytes)
    return cast(list[BaseRoute], module.otlp_routes(
        otlp, keys=gateway.keys, metrics=gateway.metrics, otlp_metrics=otlp_metrics, on_stop=gateway.on_stop
    ))


def gateway_app(settings: GatewaySettings, *, registry: CollectorRegistry | None = None) -> Starlette:
    """`flywheel gateway`'s app: events (and OTLP when present), /healthz (healthy once Kafka is connected) and
    /metrics."""
    registry = registry or CollectorRegistry()
    build_info(registry)
    gateway = Gateway(settings, registry)
    if not len(gateway.keys):
        log.warning("no keys: set FLYWHEEL_GATEWAY_SERVER_KEYS, _BROWSER_KEYS or _KEYS_FILE, else every request is "
                    "refused")

    def health() -> tuple[bool, dict[str, Any]]:
        ok = gateway.publisher.ready
        return ok, {"status": "ok" if ok else "failing", "components": {"gateway": gateway.health()}}

    ready_gauge(registry, lambda: health()[0])

    return build_app(health=health, metrics=registry_metrics(registry), gateway=gateway,
                     extra_routes=otlp_routes(gateway, OtlpMetrics(registry)))
