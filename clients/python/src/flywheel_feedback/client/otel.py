"""For apps instrumented with OpenTelemetry: who a model call was for, and the interaction id to send feedback about.

Needs the OpenTelemetry SDK (`pip install "flywheel-feedback-client[otel]"`); the rest of the client does not.

    from opentelemetry.sdk.trace import TracerProvider
    from flywheel_feedback.client import otel

    provider = TracerProvider(...)
    otel.install(provider)                  # before the instrumentors run

    with otel.interactions(session_id="s-1", user_id="u-1", task="reply-draft") as served:
        reply = client.chat.completions.create(...)
    emitter.emit(Copy(event_id=new_event_id(), ts=now(), interaction_id=served.last))

Instrumentations record the model call in a span of their own, which has ended by the time the call returns;
`interactions()` notes the interaction id of every model call's span that ends inside it, and stamps the
session, user, task and metadata onto every span started inside it (`gen_ai.conversation.id`, `user.id`,
`flywheel.task`, `flywheel.metadata.*`). Where the app makes the model call's span itself, `interaction_id()`
gives the id of the current span.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from flywheel_feedback.schemas import otel as vocabulary

_STAMP = otel_context.create_key("flywheel-interactions")
_RECORDERS: contextvars.ContextVar[tuple[Served, ...]] = contextvars.ContextVar("flywheel-served", default=())


@dataclass
class Served:
    """The interaction ids of the model calls whose spans ended inside an `interactions()` block, in order."""

    ids: list[str] = field(default_factory=list)

    @property
    def last(self) -> str:
        """The id of the last model call (raises LookupError when none ended in the block)."""
        if not self.ids:
            raise LookupError(
                "no model call's span ended here: is flywheel's span processor installed (otel.install) "
                "and the client instrumented?"
            )
        return self.ids[-1]


def interaction_id(span: trace.Span | None = None) -> str:
    """The interaction id of `span` (default: the current span), as flywheel names it."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        raise LookupError("no span is recording here: there is no interaction id to give")
    return vocabulary.interaction_id(context.trace_id, context.span_id)


class FlywheelSpanProcessor(SpanProcessor):
    """Stamps `interactions()`'s attributes on the spans started inside it and notes the model calls' ids."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        stamp = otel_context.get_value(_STAMP, parent_context)
        if isinstance(stamp, dict):
            own = span.attributes or {}  # what the instrumentation set itself wins
            span.set_attributes({key: value for key, value in stamp.items() if key not in own})

    def on_end(self, span: ReadableSpan) -> None:
        recorders = _RECORDERS.get()
        if not recorders or span.context is None or not vocabulary.is_llm_span(span.attributes or {}):
            return
        iid = vocabulary.interaction_id(span.context.trace_id, span.context.span_id)
        for served in recorders:
            served.ids.append(iid)


def install(provider: TracerProvider) -> FlywheelSpanProcessor:
    """Add flywheel's span processor to `provider` (once per provider)."""
    processor = FlywheelSpanProcessor()
    provider.add_span_processor(processor)
    return processor


@contextlib.contextmanager
def interactions(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    task: str | None = None,
    app: str | None = None,
    metadata: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Served]:
    """Model calls made inside: stamped with who and what they are for, their interaction ids noted."""
    stamp: dict[str, str | int | float | bool] = dict(otel_context.get_value(_STAMP) or {})  # type: ignore[call-overload]
    who = {vocabulary.SESSION_KEYS[0]: session_id, vocabulary.USER_KEYS[0]: user_id, vocabulary.TASK: task,
           vocabulary.APP: app}
    stamp.update((key, value) for key, value in who.items() if value is not None)
    stamp.update((f"{vocabulary.METADATA_PREFIX}{key}", value) for key, value in (metadata or {}).items())
    served = Served()
    token = otel_context.attach(otel_context.set_value(_STAMP, stamp))
    recorders = _RECORDERS.set((*_RECORDERS.get(), served))
    try:
        yield served
    finally:
        _RECORDERS.reset(recorders)
        otel_context.detach(token)
