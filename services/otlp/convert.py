"""An OTLP trace request becomes interaction events: one per LLM span, all of them or none.

Pure (no I/O). Each LLM span (`schemas/otel.py`'s `is_llm_span`) becomes one `interaction` event whose
`interaction_id` and `event_id` are `<trace id>-<span id>` in hex; every event is checked against the contract
(`check_message`) before it is returned. The fields:

- `ts`, `latency_ms`: the span's start time; its end minus its start.
- `model.id`: `gen_ai.request.model`, OpenInference's `llm.invocation_parameters` `model`, else the response model;
  `model.version`: `gen_ai.response.model`, `llm.model_name`, else the request model; `model.provider`:
  `gen_ai.provider.name`, `gen_ai.system`, `llm.provider`, `llm.system`.
- `input`, `output`: the messages under each convention (services/otlp/messages.py).
- `session_id`: `gen_ai.conversation.id`, `session.id`, `traceloop.association.properties.session_id` (span, then
  resource), else the trace id (the calls of one trace are one session).
- `user_id`: `user.id`, `enduser.id`, `traceloop.association.properties.user_id` (span, then resource), else
  `anonymous`.
- `app`: `flywheel.app` (span, then resource), the resource's `service.name`, else `unknown`.
- `task`: `flywheel.task` (span, then resource), `gen_ai.agent.name`, `gen_ai.operation.name`, else `chat`.
- `metadata`: the span's `flywheel.metadata.*` and OpenInference's `metadata`; `usage` {input_tokens,
  output_tokens}, `response_id` (the provider's, e.g. `chatcmpl-...`), `finish_reasons`, `request` options
  (temperature, ...); `otel` {trace_id, span_id, parent_span_id, span_name, scope, convention}.

Attributes of a span's `gen_ai.client.inference.operation.details` event, and the `gen_ai.prompt` /
`gen_ai.completion` attributes of the earlier `gen_ai.content.prompt` / `gen_ai.content.completion` events,
count as the span's own (the span's win).

Spans that are not model calls are counted and dropped, and so are model calls that cannot make an interaction
(a failed call, one recorded without message content, one without a model name): their counts are the
partial success of the request. A request that cannot be read, or an LLM span whose content cannot be read or
whose event breaks the contract, makes the whole request malformed (`MalformedOtlpError`): nothing of it is taken.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flywheel_feedback.schemas import otel as vocabulary
from flywheel_feedback.schemas.events import SCHEMA_VERSION, utc_iso
from flywheel_feedback.services.capture.validate import Invalid, check_message
from flywheel_feedback.services.otlp.decode import MalformedOtlpError, decode_request
from flywheel_feedback.services.otlp.messages import read_content

NOT_LLM = "not an LLM call"
FAILED = "LLM call failed (status ERROR)"
NO_CONTENT = "LLM span without message content (turn on the instrumentation's content capture)"
NO_MODEL = "LLM span without a model name"
OTHER_APP = "interaction of an app other than the key's"
# each reason's short name, the reason label of flywheel_otlp_dropped_spans_total
DROP_CODES: Final = {
    NOT_LLM: "not_llm", FAILED: "failed", NO_CONTENT: "no_content", NO_MODEL: "no_model", OTHER_APP: "other_app"
}

_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_CONTENT_EVENTS = {"gen_ai.content.prompt": "gen_ai.prompt", "gen_ai.content.completion": "gen_ai.completion"}
_REQUEST_OPTIONS = ("temperature", "top_p", "max_tokens", "seed", "frequency_penalty", "presence_penalty")


@dataclass(frozen=True, slots=True)
class Converted:
    """The events of a request, keyed by interaction id, and how many spans were dropped for which reason."""

    events: tuple[tuple[bytes, bytes], ...]
    spans: int
    dropped: Mapping[str, int]

    @property
    def dropped_spans(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        """Why spans were dropped, e.g. "3 of 4 spans dropped: 3 not an LLM call" (empty: none were)."""
        if not self.dropped:
            return ""
        reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items()))
        return f"{self.dropped_spans} of {self.spans} spans dropped: {reasons}"


def convert(request: ExportTraceServiceRequest, *, max_event_bytes: int, app: str | None = None) -> Converted:
    """The interaction events of a trace request; raises MalformedOtlpError when any LLM span cannot make one.
    With `app` (an app-bound key's), the interactions of other apps are dropped, as /v1/events refuses them."""
    events: list[tuple[bytes, bytes]] = []
    dropped: Counter[str] = Counter()
    spans = 0
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for k, span in enumerate(scope_spans.spans):
                spans += 1
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{k}]"
                try:
                    made = _span_event(span, resource, scope, max_event_bytes=max_event_bytes, app=app)
                except MalformedOtlpError as e:
                    raise MalformedOtlpError(f"{where}: {e.reason}") from None
                if isinstance(made, str):
                    dropped[made] += 1
                else:
                    events.append(made)
    return Converted(tuple(events), spans, dict(dropped))


def convert_message(value: bytes | None, *, max_message_bytes: int, max_event_bytes: int) -> Converted | Invalid:
    """One Kafka message as the Collector's Kafka exporter writes it (`otlp_proto`: one request per message)."""
    if not value:
        return Invalid("empty message: no value")
    if len(value) > max_message_bytes:
        return Invalid(f"oversized: {len(value)} bytes, the limit is {max_message_bytes}")
    try:
        return convert(decode_request(value, "protobuf"), max_event_bytes=max_event_bytes)
    except MalformedOtlpError as e:
        return Invalid(f"OTLP: {e.reason}")


def _span_event(
    span: Span, resource: dict[str, Any], scope: str, *, max_event_bytes: int, app: str | None
) -> tuple[bytes, bytes] | str:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise MalformedOtlpError(f"invalid trace id {span.trace_id.hex()!r} (16 bytes, not all zero)")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise MalformedOtlpError(f"invalid span id {span.span_id.hex()!r} (8 bytes, not all zero)")
    attributes = _with_events(span)
    if not vocabulary.is_llm_span(attributes):
        return NOT_LLM
    if span.status.code == Status.STATUS_CODE_ERROR:
        return FAILED
    content = read_content(attributes)
    if content.input is None or content.output is None:
        return NO_CONTENT
    request_model = _first_str(attributes, "gen_ai.request.model") or _invocation_model(attributes)
    response_model = _first_str(attributes, "gen_ai.response.model", "llm.model_name")
    if not (request_model or response_model):
        return NO_MODEL
    if not span.start_time_unix_nano:
        raise MalformedOtlpError("the span has no start time")
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        raise MalformedOtlpError("the span ends before it starts")

    trace_hex, span_hex = span.trace_id.hex(), span.span_id.hex()
    iid = f"{trace_hex}-{span_hex}"
    both = [attributes, resource]
    model: dict[str, Any] = {"id": request_model or response_model, "version": response_model or request_model}
    provider = _first_str(attributes, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    if provider:
        model["provider"] = provider
    event = {
        "event_id": iid,
        "type": "interaction",
        "schema_version": SCHEMA_VERSION,
        "ts": _timestamp(span.start_time_unix_nano),
        "interaction_id": iid,
        "session_id": _pick(both, vocabulary.SESSION_KEYS) or trace_hex,
        "user_id": _pick(both, vocabulary.USER_KEYS) or vocabulary.ANONYMOUS_USER,
        "app": _pick(both, (vocabulary.APP,)) or _first_str(resource, "service.name") or "unknown",
        "task": _pick(both, (vocabulary.TASK,))
        or _first_str(attributes, "gen_ai.agent.name", "gen_ai.operation.name")
        or "chat",
        "model": model,
        "input": content.input,
        "output": content.output,
        "latency_ms": _latency_ms(span),
        "metadata": _metadata(span, attributes, scope, content.convention),
    }
    if app is not None and event["app"] != app:
        return OTHER_APP
    try:
        value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedOtlpError(f"text that is not Unicode ({e.reason})") from None
    checked = check_message(value, max_bytes=max_event_bytes)
    if isinstance(checked, Invalid):
        raise MalformedOtlpError(f"span {span_hex} would make an invalid interaction: {checked.reason}")
    return iid.encode("ascii"), checked


def _with_events(span: Span) -> dict[str, Any]:
    """The span's attributes, under those its GenAI content events carry (the span's own win)."""
    extra: dict[str, Any] = {}
    for event in span.events:
        if event.name == _DETAILS_EVENT:
            extra.update(_attributes(event.attributes))
        elif event.name in _CONTENT_EVENTS:
            key = _CONTENT_EVENTS[event.name]
            extra.update((k, v) for k, v in _attributes(event.attributes).items() if k == key)
    return {**extra, **_attributes(span.attributes)}


def _metadata(span: Span, attributes: dict[str, Any], scope: str, convention: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    openinference = attributes.get("metadata")
    if isinstance(openinference, str):
        try:
            parsed = json.loads(openinference)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            metadata.update(parsed)
    for key, value in attributes.items():
        if key.startswith(vocabulary.METADATA_PREFIX):
            metadata[key.removeprefix(vocabulary.METADATA_PREFIX)] = value
    usage = {
        "input_tokens": _first_int(attributes, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                   "llm.token_count.prompt"),
        "output_tokens": _first_int(attributes, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                                    "llm.token_count.completion"),
    }
    if any(v is not None for v in usage.values()):
        metadata["usage"] = {k: v for k, v in usage.items() if v is not None}
    response_id = _first_str(attributes, "gen_ai.response.id") or _response_id(attributes)
    if response_id:
        metadata["response_id"] = response_id
    reasons = attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and all(isinstance(r, str) for r in reasons):
        metadata["finish_reasons"] = reasons
    options = {o: attributes[f"gen_ai.request.{o}"] for o in _REQUEST_OPTIONS if f"gen_ai.request.{o}" in attributes}
    if options:
        metadata["request"] = options
    metadata["otel"] = {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "span_name": span.name,
        "scope": scope,
        "convention": convention,
    }
    return metadata


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs} if pairs else {}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        pairs: list[KeyValue] = list(value.kvlist_value.values)
        return {kv.key: _value(kv.value) for kv in pairs}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _pick(sources: list[dict[str, Any]], keys: tuple[str, ...]) -> str | None:
    for source in sources:
        found = _first_str(source, *keys)
        if found:
            return found
    return None


def _first_str(attributes: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _first_int(attributes: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _invocation_model(attributes: dict[str, Any]) -> str | None:
    return _json_field(attributes.get("llm.invocation_parameters"), "model")


def _response_id(attributes: dict[str, Any]) -> str | None:
    if attributes.get("output.mime_type") != "application/json":
        return None
    return _json_field(attributes.get("output.value"), "id")


def _json_field(text: object, field: str) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    value = parsed.get(field) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) and value else None


def _timestamp(unix_nano: int) -> str:
    try:
        moment = datetime.fromtimestamp(unix_nano // 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedOtlpError(f"start time {unix_nano} ns is out of range") from None
    return utc_iso(moment.replace(microsecond=unix_nano // 1000 % 1_000_000))


def _latency_ms(span: Span) -> int | None:
    if not span.end_time_unix_nano:
        return None
    return round((span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000)
