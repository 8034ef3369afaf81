"""Checks Kafka messages against the event contract and says why one is rejected.

The verdict is the pydantic contract's; no input raises. Valid messages become JSON lines
(raw newlines are JSON whitespace, so they become spaces), ready for the columnar batch.
This runs once per event on the consumer's thread, so it does nothing more: `check_batch`
calls the contract's core validator on every message of a poll from C (`map`), with no
Python code per valid message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from operator import length_hint

from pydantic import ValidationError

from flywheel_feedback.schemas.events import EVENT_ADAPTER, EVENT_TYPES, FeedbackEvent, Interaction

# The core validator itself: TypeAdapter's Python wrapper costs about a microsecond per event.
_validate_json = EVENT_ADAPTER.validator.validate_json
_SLICE = 256


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


def check_message(value: bytes | None, *, max_bytes: int) -> bytes | Invalid:
    """The event as one JSON line, or why it is rejected."""
    checked = validate_message(value, max_bytes=max_bytes)
    return checked if isinstance(checked, Invalid) else _one_line(value)  # type: ignore[arg-type]


def validate_message(value: bytes | None, *, max_bytes: int) -> Interaction | FeedbackEvent | Invalid:
    """The event's model, or why it is rejected: the verdict `check_message` gives (the HTTP gateway's check)."""
    reason = _precheck(value, max_bytes)
    if reason is not None:
        return Invalid(reason)
    assert value is not None
    try:
        event: Interaction | FeedbackEvent = _validate_json(value)
    except Exception as e:  # never let one message stop the consumer
        return Invalid(_reason(e))
    return event


def check_batch(values: Sequence[bytes | None], *, max_bytes: int) -> dict[int, str]:
    """Validate every message; the reasons of the rejected ones by position, in order (empty: all valid).

    Each message gets the same verdict as from `check_message`.
    """
    try:
        sizes = list(map(len, values))  # type: ignore[arg-type]  # a missing value raises TypeError
        plain = min(sizes, default=1) > 0 and max(sizes, default=0) <= max_bytes
    except TypeError:
        plain = False
    if plain:
        return _validate_all(values)  # type: ignore[arg-type]
    # Empty and oversized messages are rejected before the contract sees them.
    rejected: dict[int, str] = {}
    for i, value in enumerate(values):
        reason = _precheck(value, max_bytes)
        if reason is not None:
            rejected[i] = reason
    index = [i for i in range(len(values)) if i not in rejected]
    failed = _validate_all([values[i] for i in index])  # type: ignore[misc]
    rejected.update((index[j], reason) for j, reason in failed.items())
    return dict(sorted(rejected.items()))


def json_lines(values: Sequence[bytes]) -> bytes:
    """Valid messages as JSON lines, each ending in a newline."""
    body = b"\n".join([*values, b""])
    if body.count(b"\n") != len(values) or b"\r" in body:  # pretty-printed JSON: rare
        body = b"\n".join([*map(_one_line, values), b""])
    return body


def _validate_all(values: Sequence[bytes]) -> dict[int, str]:
    rejected: dict[int, str] = {}
    total = len(values)
    remaining = iter(values)
    drain = deque[object](maxlen=0).extend  # drops each validated model as soon as it is made
    while length_hint(remaining):
        try:
            # A slice at a time: between slices the interpreter can hand the GIL to the
            # writer thread, which would otherwise wait for a whole poll to be validated.
            drain(map(_validate_json, islice(remaining, _SLICE)))
        except Exception as e:  # the message that raised is the last one taken from `remaining`
            rejected[total - length_hint(remaining) - 1] = _reason(e)
    return rejected


def _precheck(value: bytes | None, max_bytes: int) -> str | None:
    if not value:
        return "empty message: no value"
    if len(value) > max_bytes:
        return f"oversized: {len(value)} bytes, the limit is {max_bytes}"
    return None


def _one_line(value: bytes) -> bytes:
    if b"\n" in value or b"\r" in value:
        value = value.replace(b"\n", b" ").replace(b"\r", b" ")
    return value


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return describe(error)
    return f"unreadable: {type(error).__name__}: {error}"


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
