"""`POST /v1/traces`: OTLP/HTTP trace exports in, interaction events onto the events topic.

As the OTLP/HTTP specification says (https://opentelemetry.io/docs/specs/otlp/#otlphttp): protobuf
(`application/x-protobuf`) or OTLP/JSON (`application/json`), plain or gzip/deflate; the answer is in the
request's encoding. 200 with an ExportTraceServiceResponse once Kafka has acknowledged every event, its
`partial_success` counting the spans that were dropped (not model calls, or calls that cannot make an
interaction) and why; 400 with a google.rpc.Status for a malformed request (nothing of it is produced); 413
over the size limit, 415 for another encoding; 503 with Retry-After when Kafka does not take the events (the
exporter retries; an event that did land before is deduplicated by its event id, the span's ids).

A request presents a server key as /v1/events takes one (`Authorization: Bearer <key>` or `X-Flywheel-Key`; an
exporter sends it with OTEL_EXPORTER_OTLP_HEADERS): 401 without a key or with an unknown one (so with no keys
configured every request is refused, as /v1/events refuses them), 403 for a browser key (traces carry prompts
and outputs: only servers send them) or a server key sent from a page (an `Origin` header). Refusals are counted
in the gateway's rejections by code. An app-bound key's spans of other apps are dropped (partial success), as
/v1/events refuses such interactions.

Events are keyed by interaction id. The gateway mounts `otlp_routes(settings, keys=..., metrics=..., otlp_metrics=...,
on_stop=...)`; what was taken, dropped (by reason) and refused (by reason) is counted in its registry
(services/otlp/metrics.py). The route makes its own Kafka producer on first use and registers its closing with
`on_stop`, which the gateway runs when it stops.

Why not the gateway's producer (services/gateway/producer.py): it answers per event (accepted, duplicate,
unavailable) under the /v1/events admission limits, while an OTLP export is taken or refused as a whole (a 503
makes the exporter resend the whole request); its own idempotent acks=all producer keeps that simple.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel_feedback.services.gateway.keys import BrowserKey, KeyRing, ServerKey, presented_key
from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.otlp.convert import Converted, convert
from flywheel_feedback.services.otlp.decode import (
    JSON,
    PROTOBUF,
    Encoding,
    MalformedOtlpError,
    TooLargeError,
    decode_request,
    decompress,
    encoding_of,
)
from flywheel_feedback.services.otlp.metrics import KAFKA_UNAVAILABLE, OtlpMetrics
from flywheel_feedback.services.otlp.produce import EventProducer, KafkaEventProducer, ProduceError
from flywheel_feedback.services.settings import OtlpSettings

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
_INVALID_ARGUMENT = 3  # google.rpc.Code
_PERMISSION_DENIED = 7
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16


class OtlpTraces:
    """The endpoint, with its settings and producer; counts what it took and dropped."""

    def __init__(
        self,
        settings: OtlpSettings,
        keys: KeyRing,
        metrics: GatewayMetrics,
        producer: EventProducer | None = None,
        otlp_metrics: OtlpMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.metrics = metrics
        self._producer = producer
        self._made: KafkaEventProducer | None = None  # the producer this route made, which it closes
        self._closed = False
        self.otlp_metrics = otlp_metrics
        self.interactions = 0
        self.dropped_spans = 0
        self.rejected_requests = 0

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:  # made on first use: building the routes connects to nothing
            if self._closed:
                raise ProduceError("the gateway is stopping")
            self._made = KafkaEventProducer(self.settings.kafka, timeout_s=self.settings.produce_timeout_s)
            self._producer = self._made
        return self._producer

    async def close(self) -> None:
        """Deliver what the producer this route made still holds, and stop it (a producer handed in is its
        owner's to close)."""
        self._closed = True
        if self._made is not None:
            await asyncio.to_thread(self._made.close, self.settings.produce_timeout_s)

    async def handle(self, request: Request) -> Response:
        key = self._key(request)
        if isinstance(key, Response):
            return key
        try:
            encoding = encoding_of(request.headers.get("content-type"))
        except MalformedOtlpError as e:
            return self._refuse(e, "protobuf")
        try:
            body = await self._body(request)
            converted = await run_in_threadpool(
                self._convert, body, request.headers.get("content-encoding"), encoding, key.app
            )
        except MalformedOtlpError as e:
            return self._refuse(e, encoding)
        except ClientDisconnect:
            return Response(status_code=400)
        if converted.events:
            try:
                await self.producer.send(self.settings.topic, converted.events)
            except ProduceError as e:
                log.warning("OTLP request of %d interactions not taken by Kafka: %s", len(converted.events), e)
                if self.otlp_metrics is not None:
                    self.otlp_metrics.rejected_requests.labels(reason=KAFKA_UNAVAILABLE).inc()
                status = Status(code=_UNAVAILABLE, message=f"Kafka did not take the events, retry later: {e}")
                headers = {"Retry-After": str(self.settings.retry_after_s)}
                return _answer(status, encoding, status_code=503, headers=headers)
        self.interactions += len(converted.events)
        self.dropped_spans += converted.dropped_spans
        if self.otlp_metrics is not None:
            self.otlp_metrics.interactions.inc(len(converted.events))
            self.otlp_metrics.dropped(converted.dropped)
        answer = ExportTraceServiceResponse()
        if converted.dropped_spans:
            answer.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=converted.dropped_spans, error_message=converted.summary())
            )
        return _answer(answer, encoding)

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLargeError(f"request body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _convert(self, body: bytes, content_encoding: str | None, encoding: Encoding, app: str | None) -> Converted:
        data = decompress(body, content_encoding, max_bytes=self.settings.max_body_bytes)
        return convert(decode_request(data, encoding), max_event_bytes=self.settings.max_event_bytes, app=app)

    def _key(self, request: Request) -> ServerKey | Response:
        """The request's server key, or the refusal (before the body is read)."""
        presented = presented_key(request.headers)
        key = self.keys.find(presented or "")
        if key is None:
            code = "no_key" if presented is None else "unknown_key"
            reason = ("no key: send a server key as Authorization: Bearer <key> (OTEL_EXPORTER_OTLP_HEADERS)"
                      if code == "no_key" else "unknown key")
            return self._unauthorized(401, _UNAUTHENTICATED, code, reason, request, {"WWW-Authenticate": "Bearer"})
        if isinstance(key, BrowserKey):
            return self._unauthorized(403, _PERMISSION_DENIED, "browser_key",
                                      f"{key.id} is a browser key: traces are sent from servers, with a server key",
                                      request)
        if request.headers.get("origin") is not None:
            return self._unauthorized(403, _PERMISSION_DENIED, "server_key_in_browser",
                                      "a server key must stay on servers: traces are not sent from browser pages",
                                      request)
        return key

    def _unauthorized(
        self, status: int, rpc_code: int, code: str, reason: str, request: Request,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.rejected_requests += 1
        self.metrics.rejected.labels(code=code).inc()
        log.info("OTLP request refused (%d %s)", status, code)
        try:
            encoding = encoding_of(request.headers.get("content-type"))
        except MalformedOtlpError:
            encoding = "protobuf"
        return _answer(Status(code=rpc_code, message=reason), encoding, status_code=status, headers=headers)

    def _refuse(self, error: MalformedOtlpError, encoding: Encoding) -> Response:
        self.rejected_requests += 1
        if self.otlp_metrics is not None:
            self.otlp_metrics.rejected_requests.labels(reason=error.code).inc()
        log.info("OTLP request refused (%d): %s", error.status, error.reason)
        return _answer(Status(code=_INVALID_ARGUMENT, message=error.reason), encoding, status_code=error.status)


def _answer(
    message: Message, encoding: Encoding, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if encoding == "json":
        body: Any = json_format.MessageToJson(message, indent=None).encode("utf-8")
        return Response(body, status_code=status_code, media_type=JSON, headers=headers)
    return Response(message.SerializeToString(), status_code=status_code, media_type=PROTOBUF, headers=headers)


def otlp_routes(
    settings: OtlpSettings,
    *,
    keys: KeyRing,
    metrics: GatewayMetrics,
    producer: EventProducer | None = None,
    otlp_metrics: OtlpMetrics | None = None,
    on_stop: Callable[[Callable[[], Awaitable[None]]], None] | None = None,
) -> list[Route]:
    """The OTLP routes to mount in the gateway's application (`POST /v1/traces`), taking the gateway's server
    keys, counting refusals in its metrics and what was taken and dropped in `otlp_metrics`; `on_stop` is given
    what closes the route's producer when the app stops."""
    endpoint = OtlpTraces(settings, keys, metrics, producer, otlp_metrics)
    if on_stop is not None:
        on_stop(endpoint.close)
    return [Route(TRACES_PATH, endpoint.handle, methods=["POST"], name="otlp-traces")]
