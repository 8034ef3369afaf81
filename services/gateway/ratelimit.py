"""A token bucket per browser key: `rate_per_s` events per second on average, `burst` at once."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def empty(self, key_id: str, *, rate_per_s: float, burst: int, now: float | None = None) -> float:
        """Seconds until the key may send one event (0.0: it may now); nothing is spent. A request of a key with
        nothing left is refused before its body is read."""
        at = time.monotonic() if now is None else now
        bucket = self._buckets.get(key_id)
        if bucket is None:
            return 0.0
        tokens = min(float(burst), bucket.tokens + (at - bucket.at) * rate_per_s)
        return 0.0 if tokens >= 1 else (1 - tokens) / rate_per_s

    def take(self, key_id: str, cost: int, *, rate_per_s: float, burst: int, now: float | None = None) -> float:
        """Spend `cost` events of the key's allowance: 0.0 when allowed, else the seconds until it would be
        (nothing is spent then). A cost above the burst is never allowed: the caller refuses it outright."""
        at = time.monotonic() if now is None else now
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(burst), at)
        bucket.tokens = min(float(burst), bucket.tokens + (at - bucket.at) * rate_per_s)
        bucket.at = at
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / rate_per_s
