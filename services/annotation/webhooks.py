"""Standard Webhooks verification (https://www.standardwebhooks.com), as Argilla signs its deliveries, through
the `standardwebhooks` package (the reference implementation; Argilla signs with it too).

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`: space-separated
`v1,<base64 HMAC-SHA256>` entries over `"{id}.{timestamp}.{body}"`, keyed with the base64-decoded secret
(Argilla's secrets are plain base64; a `whsec_` prefix, as other senders use, is accepted too).

A delivery is refused when a header is missing, no v1 signature matches (forged or tampered), its timestamp is
outside the tolerance window either way (stale or from the future: a captured delivery cannot be replayed
later; the package allows five minutes, `tolerance_s` may narrow that), or its id was already processed inside
that window (replayed: the package does not remember ids, ReplayGuard below does). Ids are remembered in memory
for twice the tolerance window: anything older is refused as stale anyway. A restart forgets them; a replay right
after a restart would land the same answer again, which adds nothing (the gold table keeps one row per response
version).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_PREFIX: Final = "whsec_"
MAX_REMEMBERED: Final = 200_000
PACKAGE_TOLERANCE_S: Final = 300  # standardwebhooks' own window, either way


class WebhookRejectedError(Exception):
    """A delivery refused, with the HTTP status to answer (400 malformed, 401 bad signature, 409 replay)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_secret(secret: str) -> bytes:
    """The signing key of a secret (base64, optionally `whsec_`-prefixed); a clear error for anything else."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("expected the webhook secret as base64 (optionally prefixed whsec_)") from exc
    if not key:
        raise ValueError("expected a non-empty webhook secret")
    return key


def verifier(secret: str) -> Webhook:
    return Webhook(decode_secret(secret))


def signed_headers(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers a sender puts on a delivery (tests and the benchmark sign their own, or forge them)."""
    webhook = Webhook(secret if isinstance(secret, bytes) else decode_secret(secret))
    signature = webhook.sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def verify_delivery(webhook: Webhook, headers: Mapping[str, str], body: bytes, *, tolerance_s: float) -> str:
    """Check headers, timestamp window and signature; returns the delivery's webhook-id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "").strip()
    stamp = lowered.get("webhook-timestamp", "").strip()
    if not (msg_id and stamp and lowered.get("webhook-signature", "").strip()):
        raise WebhookRejectedError(400, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise WebhookRejectedError(400, "webhook-timestamp is not Unix seconds")
    try:
        body.decode()
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "the body is not UTF-8") from None
    try:
        webhook.verify(body, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        window = f" (tolerance {min(tolerance_s, PACKAGE_TOLERANCE_S):.0f}s)" if "timestamp" in str(exc) else ""
        raise WebhookRejectedError(401, f"{exc}{window}") from None
    except ValueError:  # an entry that is not `version,base64`
        raise WebhookRejectedError(401, "a webhook-signature entry is malformed") from None
    skew = time.time() - int(stamp)
    if abs(skew) > tolerance_s:
        raise WebhookRejectedError(401, f"webhook-timestamp is {skew:+.0f}s from now (tolerance {tolerance_s:.0f}s)")
    return msg_id


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
