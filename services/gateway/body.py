"""A request body, bounded, and split into its events' own bytes.

A body is one JSON event or a JSON array of them. Each event of an array is handed on as the exact bytes the
client sent (found with the standard library's JSON scanner, which gives where each element ends), so capture's
validation sees what it would see had the client produced to Kafka itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import Request

_WHITESPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()


class BodyError(Exception):
    """The body as a whole is refused (the HTTP status and why)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Body:
    items: list[bytes]
    batch: bool  # a JSON array (results per event), not one event


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it passes `max_bytes`, whatever Content-Length said."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"the body is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def split_events(body: bytes, *, max_events: int) -> Body:
    """One event, or each event of a JSON array as its own bytes."""
    text = body.lstrip(_WHITESPACE)
    if not text:
        raise BodyError(400, "the body is empty: expected a JSON event or a JSON array of events")
    if not text.startswith(b"["):
        return Body([body], batch=False)
    # surrogateescape keeps bytes that are not UTF-8, so each element's bytes come back exactly
    decoded = text.decode("utf-8", "surrogateescape")
    items: list[bytes] = []
    at, end = 1, len(decoded)
    at = _skip(decoded, at)
    if at < end and decoded[at] == "]":
        if _skip(decoded, at + 1) != end:
            raise BodyError(400, "unexpected data after the JSON array")
        raise BodyError(400, "the array is empty: expected at least one event")
    while True:
        try:
            _, stop = _DECODER.raw_decode(decoded, at)
        except (ValueError, RecursionError) as exc:
            raise BodyError(400, f"the array is not valid JSON at character {at}: {exc}") from None
        items.append(decoded[at:stop].encode("utf-8", "surrogateescape"))
        if len(items) > max_events:
            raise BodyError(413, f"more than {max_events} events in one request")
        at = _skip(decoded, stop)
        if at < end and decoded[at] == ",":
            at = _skip(decoded, at + 1)
            continue
        if at < end and decoded[at] == "]":
            if _skip(decoded, at + 1) != end:
                raise BodyError(400, "unexpected data after the JSON array")
            return Body(items, batch=True)
        raise BodyError(400, f"expected ',' or ']' at character {at} of the array")


def _skip(text: str, at: int) -> int:
    end = len(text)
    while at < end and text[at] in " \t\r\n":
        at += 1
    return at


def event_id_of(raw: bytes | None) -> str | None:
    """The event_id in an event's bytes when it has a readable one (to match a result, or find it on the topic)."""
    try:
        value = json.loads(raw or b"")
    except (ValueError, RecursionError):
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None
