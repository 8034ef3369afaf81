"""POST /v1/events: product events over HTTP onto the events topic.

A request presents a key (`Authorization: Bearer <key>`, or `X-Flywheel-Key`). Its body is one event or a JSON
array of events. Each event is validated exactly as capture validates it (`validate_message`), then held to the
key's rules: a server key may send every type (an app-bound key only its app's interactions); a browser key may
send feedback types only, from its allowed origins, under its rate limit, each event carrying an interaction
token for the interaction it is about (removed before the event goes to Kafka). Valid events are produced keyed
by interaction_id, and the answer comes once Kafka acknowledged them.

One event: 200 accepted, 422 invalid, 403 refused by the key's rules, 503 Kafka unavailable (Retry-After).
An array: 200 with a result per event (accepted / rejected with a reason), or 503 with the same results when
some events were not acknowledged: retry only those (a retry of an acknowledged event is not produced twice).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flywheel_feedback.client.tokens import TOKEN_FIELD
from flywheel_feedback.schemas.events import FeedbackEvent, Interaction
from flywheel_feedback.services.capture.validate import Invalid, validate_message
from flywheel_feedback.services.gateway.backpressure import BusyError
from flywheel_feedback.services.gateway.body import BodyError, event_id_of, read_body, split_events
from flywheel_feedback.services.gateway.keys import KEY_HEADER, BrowserKey, Key, KeyRing, presented_key
from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.gateway.producer import Delivered, Publisher, Record
from flywheel_feedback.services.gateway.ratelimit import RateLimiter
from flywheel_feedback.services.gateway.tokens import REASONS, check_token

log = logging.getLogger(__name__)

PATH = "/v1/events"
ALLOWED_HEADERS = f"authorization, content-type, {KEY_HEADER}"
PREFLIGHT_MAX_AGE_S = 600

Status = Literal["accepted", "rejected", "unavailable"]


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    event_id: str | None = None
    code: str | None = None
    reason: str | None = None
    duplicate: bool = False

    def as_json(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if index is None else {"index": index}
        out["status"] = self.status
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.duplicate:
            out["duplicate"] = True
        if self.code is not None:
            out["code"], out["reason"] = self.code, self.reason
        return out


class EventsEndpoint:
    def __init__(
        self,
        keys: KeyRing,
        publisher: Publisher,
        metrics: GatewayMetrics,
        *,
        max_event_bytes: int,
        max_body_bytes: int,
        max_batch_events: int,
    ) -> None:
        self.keys = keys
        self.publisher = publisher
        self.metrics = metrics
        self.limiter = RateLimiter()
        self._max_event_bytes = max_event_bytes
        self._max_body_bytes = max_body_bytes
        self._max_batch = max_batch_events

    async def handle(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._preflight(request)
        with self.metrics.request_seconds.time():
            response = await self._post(request)
        self.metrics.requests.labels(status=str(response.status_code)).inc()
        return response

    # --- CORS ------------------------------------------------------------------------------------

    def _preflight(self, request: Request) -> Response:
        """Preflights carry no key, so any origin of any browser key passes; the POST checks its own key's."""
        origin = (request.headers.get("origin") or "").lower()
        if origin not in self.keys.origins or request.headers.get("access-control-request-method") != "POST":
            return Response(status_code=403)
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            "Vary": "Origin",
        })

    # --- POST ------------------------------------------------------------------------------------

    async def _post(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        presented = presented_key(request.headers)
        key = self.keys.find(presented or "")
        if key is None:
            code = "no_key" if presented is None else "unknown_key"
            self.metrics.rejected.labels(code=code).inc()
            message = "no key: send Authorization: Bearer <key>" if code == "no_key" else "unknown key"
            # a page of an allowed origin may read why (a mistyped or rotated key)
            known = _cors(origin) if origin is not None and origin.lower() in self.keys.origins else {}
            return _error(401, code, message, {**known, "WWW-Authenticate": "Bearer"})
        cors: dict[str, str] = {}
        if isinstance(key, BrowserKey):
            if origin is None or origin.lower() not in key.origins:
                self.metrics.rejected.labels(code="origin").inc()
                return _error(403, "origin", f"origin {origin!r} is not allowed for browser key {key.id}")
            cors = _cors(origin)
        elif origin is not None:
            self.metrics.rejected.labels(code="server_key_in_browser").inc()
            return _error(403, "server_key_in_browser",
                          "a server key must stay on servers: browsers send with a publishable browser key")
        try:
            return await self._events(request, key, cors)
        except BodyError as exc:
            self.metrics.rejected.labels(code="body").inc()
            return _error(exc.status, "body", exc.reason, cors)

    async def _events(self, request: Request, key: Key, cors: dict[str, str]) -> Response:
        if isinstance(key, BrowserKey):  # an exhausted key's body is not even read
            wait = self.limiter.empty(key.id, rate_per_s=key.rate_per_s, burst=key.burst)
            if wait > 0:
                return self._limited(key, wait, cors)
        declared = request.headers.get("content-length")
        reserve = int(declared) if declared and declared.isdigit() else self._max_body_bytes
        if reserve > self._max_body_bytes:
            raise BodyError(413, f"the body is over {self._max_body_bytes} bytes")
        admission = self.publisher.admission
        try:
            hold = admission.admit(reserve)
        except BusyError as exc:
            return self._busy(exc.reason, exc.retry_after_s, cors)
        published = False
        try:
            body = await read_body(request, max_bytes=self._max_body_bytes)
            admission.resize(hold, len(body))
            split = split_events(body, max_events=self._max_batch)
            if isinstance(key, BrowserKey):
                limited = self._rate_limit(key, len(split.items), cors)
                if limited is not None:
                    return limited
            checked = [self._check(raw, key) for raw in split.items]
            records = [c for c in checked if isinstance(c, Record)]
            delivered: list[Delivered] = []
            if records:
                published = True  # from here the publisher releases the hold, once Kafka settled them all
                delivered = await self.publisher.publish(
                    records, hold, headers=[("flywheel-gateway-key", key.id.encode())]
                )
        finally:
            if not published:
                admission.release(hold)
        outcomes = iter(delivered)
        results = [c if isinstance(c, Result) else _from(next(outcomes), c.event_id) for c in checked]
        outcomes_seen = Counter("duplicate" if r.duplicate else r.status for r in results)
        for outcome, n in outcomes_seen.items():
            self.metrics.events.labels(outcome=outcome, key=key.id).inc(n)
        for code, n in Counter(r.code for r in results if r.status == "rejected" and r.code).items():
            self.metrics.rejected.labels(code=code).inc(n)
        return self._answer(results, batch=split.batch, cors=cors)

    def _rate_limit(self, key: BrowserKey, cost: int, cors: dict[str, str]) -> Response | None:
        if cost > key.burst:
            self.metrics.rejected.labels(code="over_burst").inc()
            return _error(413, "over_burst", f"{cost} events in one request; browser key {key.id} allows "
                          f"{key.burst} at once", cors)
        wait = self.limiter.take(key.id, cost, rate_per_s=key.rate_per_s, burst=key.burst)
        return None if wait <= 0 else self._limited(key, wait, cors)

    def _limited(self, key: BrowserKey, wait: float, cors: dict[str, str]) -> Response:
        self.metrics.rate_limited.labels(key=key.id).inc()
        retry = max(1, math.ceil(wait))
        return _error(429, "rate_limited", f"browser key {key.id} is over its rate of {key.rate_per_s:g} "
                      "events/s", {**cors, "Retry-After": str(retry)})

    def _busy(self, reason: str, retry_after_s: int, cors: dict[str, str]) -> Response:
        self.metrics.busy.inc()
        return _error(503, "unavailable", f"{reason}; retry later", {**cors, "Retry-After": str(retry_after_s)})

    # --- one event -------------------------------------------------------------------------------

    def _check(self, raw: bytes, key: Key) -> Record | Result:
        event = validate_message(raw, max_bytes=self._max_event_bytes)
        if isinstance(event, Invalid):
            return Result("rejected", event_id_of(raw), "invalid", event.reason)
        refused = self._refused(event, key)
        if refused is not None:
            return refused
        extra = event.model_extra or {}
        if TOKEN_FIELD in extra:  # the token never reaches Kafka (nor the lake)
            raw = _without_token(raw)
            again = validate_message(raw, max_bytes=self._max_event_bytes)
            if isinstance(again, Invalid):
                return Result("rejected", event.event_id, "invalid", again.reason)
        return Record(event.event_id, event.interaction_id.encode(), raw)

    def _refused(self, event: Interaction | FeedbackEvent, key: Key) -> Result | None:
        if isinstance(key, BrowserKey):
            if isinstance(event, Interaction):
                return Result("rejected", event.event_id, "browser_type",
                              f"browser keys send feedback events only, not {event.type!r}")
            token = (event.model_extra or {}).get(TOKEN_FIELD)
            problem = check_token(token, secret=self.keys.token_secret(key), interaction_id=event.interaction_id,
                                  now=time.time())
            if problem is not None:
                self.metrics.token_rejections.labels(problem=problem).inc()
                return Result("rejected", event.event_id, f"token_{problem}", REASONS[problem])
        elif key.app is not None and isinstance(event, Interaction) and event.app != key.app:
            return Result("rejected", event.event_id, "app",
                          f"key {key.id} sends interactions of app {key.app!r}, not {event.app!r}")
        return None

    # --- the answer ------------------------------------------------------------------------------

    def _answer(self, results: list[Result], *, batch: bool, cors: dict[str, str]) -> Response:
        unavailable = sum(r.status == "unavailable" for r in results)
        headers = dict(cors)
        if unavailable:
            self.metrics.busy.inc()
            headers["Retry-After"] = str(self.publisher.admission.retry_after_s)
        if not batch:
            (only,) = results
            status = {"accepted": 200, "unavailable": 503}.get(only.status) or (422 if only.code == "invalid" else 403)
            return JSONResponse(only.as_json(), status_code=status, headers=headers)
        body = {
            "accepted": sum(r.status == "accepted" for r in results),
            "rejected": sum(r.status == "rejected" for r in results),
            "unavailable": unavailable,
            "results": [r.as_json(i) for i, r in enumerate(results)],
        }
        return JSONResponse(body, status_code=503 if unavailable else 200, headers=headers)


def _from(delivered: Delivered, event_id: str) -> Result:
    if delivered.outcome == "unavailable":
        return Result("unavailable", event_id, "unavailable", delivered.reason)
    return Result("accepted", event_id, duplicate=delivered.outcome == "duplicate")


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin.lower(), "Vary": "Origin",
            "Access-Control-Expose-Headers": "Retry-After"}


def _error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"status": "rejected" if status < 500 else "unavailable", "code": code, "reason": reason},
                        status_code=status, headers=headers)


def _without_token(raw: bytes) -> bytes:
    event = json.loads(raw)
    event.pop(TOKEN_FIELD, None)
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
