"""The app-side OpenTelemetry helper (flywheel_feedback.client.otel) on the real SDK (nothing running)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace

from flywheel_feedback.client import otel
from flywheel_feedback.schemas import otel as vocabulary

from .otel_helpers import recording_provider

CHAT = {"gen_ai.operation.name": "chat"}


def test_interactions_stamp_spans_and_note_model_calls_only() -> None:
    with recording_provider() as (provider, exporter):
        otel.install(provider)
        tracer = provider.get_tracer("app")
        with otel.interactions(session_id="s-1", user_id="u-1", task="summarize", metadata={"segment": "pro"}) as outer:
            tracer.start_span("GET /doc").end()  # not a model call: stamped, not noted
            with otel.interactions(task="title") as inner:
                tracer.start_span("chat m", attributes=CHAT).end()
            tracer.start_span("chat m", attributes=CHAT).end()
        tracer.start_span("chat m", attributes=CHAT).end()  # outside: neither
        spans = exporter.get_finished_spans()
    ids = [vocabulary.interaction_id(s.context.trace_id, s.context.span_id) for s in spans if s.context]
    assert inner.ids == [ids[1]]
    assert outer.ids == [ids[1], ids[2]] and outer.last == ids[2]
    attributes = [dict(s.attributes or {}) for s in spans]
    assert attributes[0] == {"gen_ai.conversation.id": "s-1", "user.id": "u-1", "flywheel.task": "summarize",
                             "flywheel.metadata.segment": "pro"}
    assert attributes[1]["flywheel.task"] == "title" and attributes[1]["gen_ai.conversation.id"] == "s-1"
    assert attributes[2]["flywheel.task"] == "summarize"
    assert attributes[3] == CHAT


def test_an_instrumentations_own_attributes_win() -> None:
    with recording_provider() as (provider, exporter):
        otel.install(provider)
        with otel.interactions(session_id="ours"):
            provider.get_tracer("x").start_span("chat", attributes={**CHAT, "gen_ai.conversation.id": "theirs"}).end()
        (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["gen_ai.conversation.id"] == "theirs"


def test_async_calls_are_noted_in_their_own_block() -> None:
    with recording_provider() as (provider, _):
        otel.install(provider)
        tracer = provider.get_tracer("app")

        async def call(session: str) -> list[str]:
            with otel.interactions(session_id=session) as served:
                await asyncio.sleep(0.01)
                tracer.start_span("chat", attributes=CHAT).end()
            return served.ids

        async def both() -> list[list[str]]:
            return list(await asyncio.gather(call("a"), call("b")))

        first, second = asyncio.run(both())
    assert len(first) == len(second) == 1 and first != second


def test_interaction_id_of_the_current_span_and_the_errors() -> None:
    with recording_provider() as (provider, _), provider.get_tracer("app").start_as_current_span("chat") as span:
        context = span.get_span_context()
        assert otel.interaction_id() == f"{context.trace_id:032x}-{context.span_id:016x}"
        assert otel.interaction_id(span) == otel.interaction_id()
    assert trace.get_current_span() is trace.INVALID_SPAN
    with pytest.raises(LookupError, match="no span"):
        otel.interaction_id()
    with otel.interactions() as served, pytest.raises(LookupError, match=r"otel\.install"):
        _ = served.last
