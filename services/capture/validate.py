"""Checks one Kafka message against the event contract and says why it is rejected.

The verdict is the pydantic contract's; no input raises. A valid message comes back as one
JSON line (raw newlines are JSON whitespace, so they become spaces), ready for the columnar
batch. This runs once per event on the consumer's thread, so it does nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, EVENT_TYPES

# The core validator itself: TypeAdapter's Python wrapper costs about a microsecond per event.
_validate_json = EVENT_ADAPTER.validator.validate_json


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


def check_message(value: bytes | None, *, max_bytes: int) -> bytes | Invalid:
    """The event as one JSON line, or why it is rejected."""
    if not value:
        return Invalid("empty message: no value")
    if len(value) > max_bytes:
        return Invalid(f"oversized: {len(value)} bytes, the limit is {max_bytes}")
    try:
        _validate_json(value)
    except ValidationError as e:
        return Invalid(describe(e))
    except Exception as e:  # never let one message stop the consumer
        return Invalid(f"unreadable: {type(e).__name__}: {e}")
    if b"\n" in value or b"\r" in value:
        value = value.replace(b"\n", b" ").replace(b"\r", b" ")
    return value


def describe(error: ValidationError, *, limit: int = 3) -> str:
    """A short, readable reason: the first few problems with where they are."""
    parts: list[str] = []
    for item in error.errors(include_url=False)[:limit]:
        kind = item["type"]
        where = ".".join(str(p) for p in item["loc"])
        if kind == "json_invalid":
            parts.append(f"invalid JSON: {item['ctx'].get('error', item['msg']) if 'ctx' in item else item['msg']}")
        elif kind == "union_tag_invalid":
            found = item.get("ctx", {}).get("tag")
            parts.append(f"unknown event type {found!r}; expected one of {', '.join(EVENT_TYPES)}")
        elif kind == "union_tag_not_found":
            parts.append("missing field 'type'")
        elif kind in ("dict_type", "model_attributes_type", "model_type") and not where:
            parts.append("not a JSON object")
        else:
            # loc starts with the event type for tagged unions; it makes the reason clearer
            parts.append(f"{kind} at {where}: {item['msg']}" if where else f"{kind}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
