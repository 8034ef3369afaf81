"""How an OpenTelemetry span becomes an interaction: its id and the attributes flywheel reads for who and where.

This is part of the contract, so it lives beside the event models and needs nothing but the standard library:
the app-side helper (`flywheel_feedback.client.otel`, on the OpenTelemetry SDK) and the service's converter
(`flywheel_feedback.services.otlp`, on the OTLP protobufs) both read it.

The interaction id of an LLM span is `<trace id>-<span id>` in lowercase hex (32 and 16 digits, the W3C
trace-context spelling), e.g. `4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7`: unique for every span of every
trace, present whatever the instrumentation and the provider, and known to the app while the call runs. Feedback
about that call carries it as its `interaction_id`. The event id of the interaction is the same string, so an
exporter's retry of a span is deduplicated like any event sent twice.
"""

from __future__ import annotations

from collections.abc import Mapping

# The attributes an app (or flywheel's span processor) sets; span attributes win over resource attributes.
APP = "flywheel.app"
TASK = "flywheel.task"
METADATA_PREFIX = "flywheel.metadata."  # flywheel.metadata.segment = "pro" -> metadata {"segment": "pro"}

# Who: the first key present wins, in this order (the current GenAI conventions, then OpenInference and the
# general `session.id`/`user.id`, then OpenLLMetry's association properties). Spans first, then the resource.
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "traceloop.association.properties.session_id")
USER_KEYS = ("user.id", "enduser.id", "traceloop.association.properties.user_id")
ANONYMOUS_USER = "anonymous"  # no user key anywhere

# Which spans are model calls (the rest are counted and dropped).
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})  # gen_ai.operation.name
LEGACY_REQUEST_TYPES = frozenset({"chat", "completion"})  # OpenLLMetry's llm.request.type


def interaction_id(trace_id: int, span_id: int) -> str:
    """The interaction id of the span with these ids (as the SDK holds them: integers)."""
    return f"{trace_id:032x}-{span_id:016x}"


def is_llm_span(attributes: Mapping[str, object]) -> bool:
    """Whether a span with these attributes is a call to a language model under one of the conventions.

    The current GenAI conventions name the operation (`chat`, `text_completion`, `generate_content`; embeddings,
    tool executions and agent invocations are not model calls that serve an output); OpenInference says
    `openinference.span.kind = LLM`; OpenLLMetry's older releases say `llm.request.type` or index the prompt.
    """
    operation = attributes.get("gen_ai.operation.name")
    if operation is not None:
        return operation in LLM_OPERATIONS
    kind = attributes.get("openinference.span.kind")
    if kind is not None:
        return kind == "LLM"
    request_type = attributes.get("llm.request.type")
    if request_type is not None:
        return request_type in LEGACY_REQUEST_TYPES
    return "gen_ai.prompt.0.content" in attributes or "gen_ai.completion.0.content" in attributes
