"""Backpressure: what the gateway holds for Kafka is bounded, and while Kafka is slow or down new requests are
refused at once (503 with Retry-After) instead of piling up in memory.

A request holds its bytes from admission until Kafka has settled every event it produced (acknowledged or
failed), which can be after the request was answered: a 503 for an acknowledgement that did not come in time
does not free the memory the producer still holds for it. New requests are refused when the bytes or requests
held would pass their limits, when the oldest produce still unsettled is older than `stall_s`, and for
`cooldown_s` after Kafka failed a delivery.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field


class BusyError(Exception):
    """Refused for now: retry after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Hold:
    nbytes: int
    number: int
    producing_since: float | None = None
    released: bool = field(default=False, repr=False)


class Admission:
    def __init__(
        self, *, max_bytes: int, max_requests: int, stall_s: float, cooldown_s: float, retry_after_s: int
    ) -> None:
        self._max_bytes = max_bytes
        self._max_requests = max_requests
        self._stall_s = stall_s
        self._cooldown_s = cooldown_s
        self.retry_after_s = retry_after_s
        self.bytes = 0
        self.requests = 0
        self._producing: dict[int, Hold] = {}  # oldest first
        self._failed_at = -float("inf")
        self._numbers = itertools.count()

    def refusal(self, nbytes: int, *, now: float | None = None) -> str | None:
        """Why a request of `nbytes` would be refused now (None: it would not)."""
        at = time.monotonic() if now is None else now
        if self.requests >= self._max_requests:
            return f"{self.requests} requests in flight, the limit"
        if self.bytes + nbytes > self._max_bytes:
            return f"{self.bytes} bytes in flight; {nbytes} more would pass the limit of {self._max_bytes}"
        if self._producing:
            oldest = next(iter(self._producing.values()))
            assert oldest.producing_since is not None
            if at - oldest.producing_since > self._stall_s:
                return f"Kafka has not acknowledged events produced {at - oldest.producing_since:.1f}s ago"
        if at - self._failed_at < self._cooldown_s:
            return f"Kafka failed a delivery {at - self._failed_at:.1f}s ago"
        return None

    def admit(self, nbytes: int) -> Hold:
        reason = self.refusal(nbytes)
        if reason is not None:
            raise BusyError(reason, self.retry_after_s)
        self.bytes += nbytes
        self.requests += 1
        return Hold(nbytes, next(self._numbers))

    def resize(self, hold: Hold, nbytes: int) -> None:
        """The request turned out to hold `nbytes` (its body is read, or only part of it is produced)."""
        if not hold.released:
            self.bytes += nbytes - hold.nbytes
            hold.nbytes = nbytes

    def producing(self, hold: Hold) -> None:
        if not hold.released and hold.producing_since is None:
            hold.producing_since = time.monotonic()
            self._producing[hold.number] = hold

    def release(self, hold: Hold) -> None:
        if hold.released:
            return
        hold.released = True
        self.bytes -= hold.nbytes
        self.requests -= 1
        self._producing.pop(hold.number, None)

    def failed(self) -> None:
        self._failed_at = time.monotonic()
