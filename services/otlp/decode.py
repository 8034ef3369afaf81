"""Reading an OTLP trace request: protobuf or OTLP/JSON, plain, gzip or deflate, within a size limit.

Pure: bytes in, an ExportTraceServiceRequest out, or a `MalformedOtlpError` saying why not. OTLP/JSON differs from
protobuf's canonical JSON mapping in one way that matters: trace and span ids are hex, not base64
(https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding); unknown fields are ignored, as the
specification requires of receivers.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

Encoding = Literal["protobuf", "json"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class MalformedOtlpError(ValueError):
    """The request cannot be read, or would not make valid events; nothing of it is taken."""

    status = 400
    code = "malformed"  # the reason label of flywheel_otlp_rejected_requests_total

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooLargeError(MalformedOtlpError):
    status = 413
    code = "too_large"


class UnsupportedMediaTypeError(MalformedOtlpError):
    status = 415
    code = "unsupported_media_type"


def encoding_of(content_type: str | None) -> Encoding:
    """Which OTLP encoding a Content-Type names (parameters such as charset are ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    raise UnsupportedMediaTypeError(f"unsupported Content-Type {content_type!r}: send {PROTOBUF} or {JSON}")


def decompress(body: bytes, content_encoding: str | None, *, max_bytes: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate or none), refused past `max_bytes`."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("identity", "none", ""):
        data = body
    elif coding in ("gzip", "x-gzip"):
        data = _inflate(body, zlib.MAX_WBITS | 16, max_bytes)
    elif coding == "deflate":
        try:
            data = _inflate(body, zlib.MAX_WBITS, max_bytes)  # zlib-wrapped, as HTTP means it
        except MalformedOtlpError:
            data = _inflate(body, -zlib.MAX_WBITS, max_bytes)  # raw deflate, as some clients send it
    else:
        raise UnsupportedMediaTypeError(f"unsupported Content-Encoding {content_encoding!r}: gzip, deflate or none")
    if len(data) > max_bytes:
        raise TooLargeError(f"request body over {max_bytes} bytes")
    return data


def decode_request(data: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """Parse an uncompressed ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    if encoding == "protobuf":
        try:
            request.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:
            raise MalformedOtlpError(f"not an OTLP ExportTraceServiceRequest protobuf: {e}") from None
        return request
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedOtlpError(f"invalid JSON: {e}") from None
    if not isinstance(document, dict):
        raise MalformedOtlpError("an OTLP/JSON request is a JSON object with resourceSpans")
    try:
        json_format.ParseDict(_ids_as_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise MalformedOtlpError(f"not an OTLP/JSON trace request: {e}") from None
    return request


def _inflate(body: bytes, wbits: int, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise MalformedOtlpError(f"body does not decompress: {e}") from None
    if len(data) > max_bytes:
        raise TooLargeError(f"request body over {max_bytes} bytes once decompressed")
    if not inflater.eof:
        raise MalformedOtlpError("compressed body is truncated")
    return data


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _ids_as_base64(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the hex ids of spans, their links and events rewritten as protobuf's JSON wants them."""
    for resource_spans in _items(document, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _rewrite_ids(span)
                for link in _items(span, "links"):
                    _rewrite_ids(link)
    return document


def _items(parent: object, *names: str) -> list[dict[str, Any]]:
    if not isinstance(parent, dict):
        return []
    for name in names:
        value = parent.get(name)
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict)]
    return []


def _rewrite_ids(holder: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        value = holder.get(name)
        if not isinstance(value, str) or not value:
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise MalformedOtlpError(f"{name} {value[:40]!r} is not hex (OTLP/JSON writes ids in hex)") from None
        holder[name] = base64.b64encode(raw).decode("ascii")

