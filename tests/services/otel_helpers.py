"""For the OpenTelemetry tests: a small OpenAI-compatible HTTP server, the OTLP route served by uvicorn, and
spans made by the real OpenTelemetry SDK encoded as its OTLP exporters encode them."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.applications import Starlette

from flywheel_feedback.services.gateway.keys import KeyRing, ServerKey
from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.gateway.otlp_route import otlp_routes
from flywheel_feedback.services.otlp.produce import EventProducer
from flywheel_feedback.services.settings import OtlpSettings

from ..conftest import free_port

OTLP_KEY = "sk_test_otlp_" + "o" * 24  # the apps' server key, bound to no app
# what an app sets to send it, as the W3C baggage format of OTEL_EXPORTER_OTLP_HEADERS has it (the space encoded)
OTLP_HEADERS = f"Authorization=Bearer%20{OTLP_KEY}"


def otlp_keys() -> KeyRing:
    return KeyRing([ServerKey(id="apps", key=SecretStr(OTLP_KEY))])


def answer_to(messages: Sequence[dict[str, Any]]) -> str:
    """What the test server answers: it names the last user message, so each call's output is known."""
    last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return f"Here is how: {last}"


RESPONSE_MODEL_SUFFIX = "-2026-01-15"


class FakeOpenAI:
    """`POST /v1/chat/completions` as OpenAI answers it (JSON, or server-sent events with `stream`), on loopback,
    after `delay_s` (the model's latency, which the interactions must show)."""

    def __init__(self, *, delay_s: float = 0.15) -> None:
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                time.sleep(server.delay_s)
                if body.get("stream"):
                    self._stream(body)
                else:
                    self._send(200, server.completion(body))

            def _send(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in server.chunks(body):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(0.01)
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._http.server_port}/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        n = len(self.requests)
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"] + RESPONSE_MODEL_SUFFIX,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer_to(body["messages"])}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
        }

    def chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        n = len(self.requests)
        words = answer_to(body["messages"]).split(" ")
        base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body["model"] + RESPONSE_MODEL_SUFFIX}
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


@contextmanager
def serve_otlp(settings: OtlpSettings, producer: EventProducer, keys: KeyRing | None = None) -> Iterator[str]:
    """The OTLP routes in a minimal Starlette app under uvicorn on loopback, taking `keys` (OTLP_KEY by default);
    yields the base URL."""
    routes = otlp_routes(settings, keys=keys or otlp_keys(), metrics=GatewayMetrics(CollectorRegistry()),
                         producer=producer)
    app = Starlette(routes=routes)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def recording_provider(
    service: str = "support-bot", **resource: str
) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A real SDK tracer provider whose finished spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def otlp_request(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The request the SDK's OTLP exporters send for these spans."""
    return encode_spans(spans)


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request in OTLP/JSON: protobuf's JSON mapping with the ids in hex."""
    document = json_format.MessageToDict(request)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document
