"""A product app instrumented with OpenTelemetry, run by test_otlp_sdk.py in a process of its own:

    python otel_app.py <instrumentation> <session id> <user id>

The `openai` SDK, instrumented by one of `openai-v2` (opentelemetry-instrumentation-openai-v2), `openinference`
(openinference-instrumentation-openai) or `openllmetry` (opentelemetry-instrumentation-openai), holds a two-turn
conversation with the server at OPENAI_BASE_URL (the second turn streamed) inside an app span of its own; the SDK's
OTLP/HTTP exporter sends the spans to OTEL_EXPORTER_OTLP_ENDPOINT. Prints the interaction ids and outputs as JSON.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from openai import OpenAI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from flywheel_feedback.client import otel

MODEL = "gpt-4o-mini"
SYSTEM = "You draft replies for the support team."
QUESTIONS = ("How do I reset my password?", "And if I no longer have access to my e-mail?")


INSTRUMENTATIONS = {
    "openai-v2": "opentelemetry.instrumentation.openai_v2",
    "openinference": "openinference.instrumentation.openai",
    "openllmetry": "opentelemetry.instrumentation.openai",
}


def instrument(name: str, provider: TracerProvider) -> None:
    instrumentor: Any = importlib.import_module(INSTRUMENTATIONS[name]).OpenAIInstrumentor
    instrumentor().instrument(tracer_provider=provider)


@contextlib.contextmanager
def who(name: str, session_id: str, user_id: str) -> Iterator[otel.Served]:
    """Who the calls are for: OpenInference's own context where it has one, flywheel's span processor elsewhere."""
    if name == "openinference":
        from openinference.instrumentation import using_session, using_user

        with using_session(session_id), using_user(user_id), otel.interactions(task="reply-draft") as served:
            yield served
    else:
        with otel.interactions(session_id=session_id, user_id=user_id, task="reply-draft") as served:
            yield served


def main() -> None:
    name, session_id, user_id = sys.argv[1:4]
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    otel.install(provider)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, compression: OTEL_* variables
    trace.set_tracer_provider(provider)
    instrument(name, provider)

    client = OpenAI()  # OPENAI_BASE_URL, OPENAI_API_KEY
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
    outputs = []
    with trace.get_tracer("support-bot").start_as_current_span("POST /tickets/42/draft"), \
            who(name, session_id, user_id) as served:
        first = client.chat.completions.create(model=MODEL, messages=messages)
        outputs.append(first.choices[0].message.content)
        messages += [{"role": "assistant", "content": outputs[0] or ""}, {"role": "user", "content": QUESTIONS[1]}]
        stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        outputs.append("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
    provider.shutdown()  # exports what is left
    print(json.dumps({"ids": served.ids, "outputs": outputs, "messages": messages}))


if __name__ == "__main__":
    main()
