"""`POST /v1/traces`: OTLP/HTTP trace exports in, interaction events onto the events topic.

As the OTLP/HTTP specification says (https://opentelemetry.io/docs/specs/otlp/#otlphttp): protobuf
(`application/x-protobuf`) or OTLP/JSON (`application/json`), plain or gzip/deflate; the answer is in the
request's encoding. 200 with an ExportTraceServiceResponse once Kafka has acknowledged every event, its
`partial_success` counting the spans that were dropped (not model calls, or calls that cannot make an
interaction) and why; 400 with a google.rpc.Status for a malformed request (nothing of it is produced); 413
over the size limit, 415 for another encoding; 503 with Retry-After when Kafka does not take the events (the
exporter retries; an event that did land before is deduplicated by its event id, the span's ids).

Events are keyed by interaction id. The gateway mounts `otlp_routes(settings, metrics=...)`; what was taken,
dropped (by reason) and refused (by reason) is counted in its registry (services/otlp/metrics.py).
"""

from __future__ import annotations

import logging
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
_UNAVAILABLE = 14


class OtlpTraces:
    """The endpoint, with its settings and producer; counts what it took and dropped."""

    def __init__(
        self, settings: OtlpSettings, producer: EventProducer | None = None, metrics: OtlpMetrics | None = None
    ) -> None:
        self.settings = settings
        self._producer = producer
        self.metrics = metrics
        self.interactions = 0
        self.dropped_spans = 0
        self.rejected_requests = 0

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:  # made on first use: building the routes connects to nothing
            self._producer = KafkaEventProducer(self.settings.kafka, timeout_s=self.settings.produce_timeout_s)
        return self._producer

    async def handle(self, request: Request) -> Response:
        try:
            encoding = encoding_of(request.headers.get("content-type"))
        except MalformedOtlpError as e:
            return self._refuse(e, "protobuf")
        try:
            body = await self._body(request)
            converted = await run_in_threadpool(self._convert, body, request.headers.get("content-encoding"), encoding)
        except MalformedOtlpError as e:
            return self._refuse(e, encoding)
        except ClientDisconnect:
            return Response(status_code=400)
        if converted.events:
            try:
                await self.producer.send(self.settings.topic, converted.events)
            except ProduceError as e:
                log.warning("OTLP request of %d interactions not taken by Kafka: %s", len(converted.events), e)
                if self.metrics is not None:
                    self.metrics.rejected_requests.labels(reason=KAFKA_UNAVAILABLE).inc()
                status = Status(code=_UNAVAILABLE, message=f"Kafka did not take the events, retry later: {e}")
                headers = {"Retry-After": str(self.settings.retry_after_s)}
                return _answer(status, encoding, status_code=503, headers=headers)
        self.interactions += len(converted.events)
        self.dropped_spans += converted.dropped_spans
        if self.metrics is not None:
            self.metrics.interactions.inc(len(converted.events))
            self.metrics.dropped(converted.dropped)
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

    def _convert(self, body: bytes, content_encoding: str | None, encoding: Encoding) -> Converted:
        data = decompress(body, content_encoding, max_bytes=self.settings.max_body_bytes)
        return convert(decode_request(data, encoding), max_event_bytes=self.settings.max_event_bytes)

    def _refuse(self, error: MalformedOtlpError, encoding: Encoding) -> Response:
        self.rejected_requests += 1
        if self.metrics is not None:
            self.metrics.rejected_requests.labels(reason=error.code).inc()
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
    settings: OtlpSettings, *, producer: EventProducer | None = None, metrics: OtlpMetrics | None = None
) -> list[Route]:
    """The OTLP routes to mount in the gateway's application (`POST /v1/traces`), counting into `metrics`."""
    endpoint = OtlpTraces(settings, producer, metrics)
    return [Route(TRACES_PATH, endpoint.handle, methods=["POST"], name="otlp-traces")]
