"""Standard Webhooks verification (https://www.standardwebhooks.com), as Argilla signs its deliveries.

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`: space-separated
`v1,<base64 HMAC-SHA256>` entries over `"{id}.{timestamp}.{body}"`, keyed with the base64-decoded secret
(Argilla's secrets are plain base64; a `whsec_` prefix, as other senders use, is accepted too).

A delivery is refused when a header is missing, no v1 signature matches (forged or tampered), its timestamp is
outside the tolerance window either way (stale or from the future: a captured delivery cannot be replayed
later), or its id was already processed inside that window (replayed). Ids are remembered in memory for twice
the tolerance window: anything older is refused as stale anyway. A restart forgets them; a replay right after
a restart would land the same answer again, which adds nothing (the gold table keeps one row per response
version).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

SECRET_PREFIX: Final = "whsec_"
MAX_REMEMBERED: Final = 200_000


class WebhookRejectedError(Exception):
    """A delivery refused, with the HTTP status to answer (400 malformed, 401 bad signature, 409 replay)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_secret(secret: str) -> bytes:
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("expected the webhook secret as base64 (optionally prefixed whsec_)") from exc
    if not key:
        raise ValueError("expected a non-empty webhook secret")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a delivery (used by tests and the benchmark to forge or sign)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_signature(
    key: bytes, headers: Mapping[str, str], body: bytes, *, tolerance_s: float, now: float | None = None
) -> str:
    """Check headers, timestamp window and signature; returns the delivery's webhook-id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "").strip()
    stamp = lowered.get("webhook-timestamp", "").strip()
    offered = lowered.get("webhook-signature", "").strip()
    if not (msg_id and stamp and offered):
        raise WebhookRejectedError(400, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise WebhookRejectedError(400, "webhook-timestamp is not Unix seconds")
    timestamp = int(stamp)
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance_s:
        raise WebhookRejectedError(401, f"webhook-timestamp is {skew:+.0f}s from now (tolerance {tolerance_s:.0f}s)")
    expected = sign(key, msg_id, timestamp, body).encode()
    # Every v1 entry is tried: a sender rotating secrets signs with both.
    for entry in offered.split():
        if entry.startswith("v1,") and hmac.compare_digest(entry.encode(), expected):
            return msg_id
    raise WebhookRejectedError(401, "no webhook-signature matches")


class ReplayGuard:
    """Webhook ids seen inside the window. Claim before processing; `done` after the effect is durable, or
    `release` when it failed (so the sender's retry is not mistaken for a replay)."""

    def __init__(self, ttl_s: float, *, max_entries: int = MAX_REMEMBERED) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> expiry, oldest first
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, msg_id: str, *, now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        with self._lock:
            self._expire(at)
            if msg_id in self._seen or msg_id in self._in_flight:
                raise WebhookRejectedError(409, f"webhook-id {msg_id} was already received (replay)")
            self._in_flight.add(msg_id)

    def done(self, msg_id: str, *, now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        with self._lock:
            self._in_flight.discard(msg_id)
            self._seen[msg_id] = at + self._ttl
            self._seen.move_to_end(msg_id)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)

    def release(self, msg_id: str) -> None:
        with self._lock:
            self._in_flight.discard(msg_id)

    def _expire(self, now: float) -> None:
        while self._seen:
            msg_id, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[msg_id]
