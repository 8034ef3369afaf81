"""Liveness and readiness of `flywheel serve`, kept apart from the work they judge.

Each dependency (Kafka, the lake, Argilla) is probed on a thread of its own every `interval_s`, with a timeout
of `timeout_s`, and its last answer is kept here; the HTTP answers only read those answers, so a dependency that
hangs never blocks /readyz. A probe that gave no answer for longer than `stale_after_s` counts as failing too
(its call hangs beyond its own timeout), so readiness turns false within interval + 2 x timeout + 1 s of an
outage, whatever the outage looks like. Liveness is the event loop's heartbeat: a loop that stopped beating for
`LIVENESS_STALE_S` is stuck, and restarting the process is the cure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

LIVENESS_STALE_S: Final = 10.0

Probe = Callable[[], None]  # returns when the dependency answered, raises with the reason when it did not


@dataclass
class Check:
    """The last answer of one dependency's probe."""

    name: str
    ok: bool | None = None  # None: no answer yet
    reason: str | None = None
    answered_at: float | None = None  # monotonic
    changed_at: float = field(default_factory=time.monotonic)

    def view(self, now: float, stale_after_s: float) -> tuple[bool, str | None]:
        """(ok, reason) as of `now`: an answer older than `stale_after_s` is no answer."""
        if self.answered_at is None:
            return False, f"{self.name}: not probed yet"
        age = now - self.answered_at
        if age > stale_after_s:
            return False, f"{self.name}: the probe has not answered for {age:.0f}s"
        return bool(self.ok), self.reason


class Dependencies:
    """The probes' threads and their last answers."""

    def __init__(self, probes: dict[str, Probe], *, interval_s: float, timeout_s: float) -> None:
        self._probes = probes
        self.interval_s = interval_s
        self.stale_after_s = interval_s + 2 * timeout_s + 1.0
        self.checks = {name: Check(name) for name in probes}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name in self._probes:
            thread = threading.Thread(target=self._loop, args=(name,), name=f"probe-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def probe_once(self, name: str) -> None:
        try:
            self._probes[name]()
        except Exception as e:
            self._record(name, False, describe_error(e))
        else:
            self._record(name, True, None)

    def _loop(self, name: str) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.probe_once(name)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _record(self, name: str, ok: bool, reason: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            check = self.checks[name]
            if check.ok is not ok:
                if ok and check.ok is not None:
                    log.info("%s reachable again after %.0fs", name, now - check.changed_at)
                elif not ok:
                    log.warning("%s unreachable: %s", name, reason)
                check.changed_at = now
            check.ok, check.reason, check.answered_at = ok, reason, now

    def readiness(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        at = time.monotonic() if now is None else now
        detail: dict[str, Any] = {}
        ready = True
        with self._lock:
            for name, check in self.checks.items():
                ok, reason = check.view(at, self.stale_after_s)
                ready = ready and ok
                detail[name] = {"ok": ok, "reason": reason, "for_s": round(at - check.changed_at, 1)}
        return ready, detail


class Heartbeat:
    """Beaten by the event loop every second; liveness is a recent beat."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def liveness(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        age = (time.monotonic() if now is None else now) - self.last
        live = age <= LIVENESS_STALE_S
        return live, {"ok": live, "event_loop_last_beat_s": round(age, 1)}


def retry_delay(failures_in_a_row: int, *, base_s: float, cap_s: float, interval_s: float) -> float:
    """When a failed stage runs again: exponential backoff from `base_s`, capped at `cap_s` and never later than
    its regular interval."""
    if failures_in_a_row <= 0:
        return interval_s
    return float(min(base_s * 2.0 ** (failures_in_a_row - 1), cap_s, interval_s))


def describe_error(error: BaseException) -> str:
    """`Type: message`, once: some errors (kafka-python's, librdkafka's) already start their text with their type."""
    name = type(error).__name__
    text = str(error).strip()
    kafka_error: Any = error.args[0] if error.args else None
    if callable(getattr(kafka_error, "str", None)):  # confluent_kafka.KafkaException(KafkaError)
        text = str(kafka_error.str())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
