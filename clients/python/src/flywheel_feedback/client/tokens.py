"""Interaction tokens: the product's server vouches that it served an interaction, so a browser may send feedback
about that interaction (and no other) to flywheel's HTTP gateway with a publishable browser key.

    token = interaction_token(secret, interaction_id, ttl=3600)   # on the server, when the answer is served

The token is four dot-separated ASCII parts, the same in every language:

    v1.<expiry>.<id>.<mac>
    expiry = Unix seconds (decimal) after which the token is refused
    id     = base64url(UTF-8 interaction id), no padding
    mac    = base64url(HMAC-SHA256(key = UTF-8 secret, message = "v1.<expiry>.<id>")), no padding

The browser puts it in each feedback event as `interaction_token`; the gateway checks it and removes it before
the event goes to Kafka. Standard library only (hmac, hashlib, base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from datetime import timedelta

TOKEN_VERSION = "v1"
TOKEN_FIELD = "interaction_token"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_mac(secret: str | bytes, payload: str) -> str:
    """The token's last part: base64url HMAC-SHA256 of `payload` ("v1.<expiry>.<id>")."""
    key = secret.encode() if isinstance(secret, str) else secret
    return b64url(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def interaction_token(
    secret: str | bytes, interaction_id: str, ttl: float | timedelta, *, now: float | None = None
) -> str:
    """A token for feedback about `interaction_id`, valid for `ttl` (seconds or a timedelta) from now."""
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not secret:
        raise ValueError("expected the gateway's token secret, got an empty one")
    if not interaction_id:
        raise ValueError("expected an interaction id, got an empty one")
    if not seconds > 0:
        raise ValueError(f"expected a positive ttl, got {ttl!r}")
    expiry = int(time.time() if now is None else now) + math.ceil(seconds)
    payload = f"{TOKEN_VERSION}.{expiry}.{b64url(interaction_id.encode())}"
    return f"{payload}.{token_mac(secret, payload)}"
