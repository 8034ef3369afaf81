"""The webhook receiver (`flywheel annotate serve`): Argilla's signed deliveries in, gold labels out.

A delivery is verified (signature, timestamp window, replay) before its body is even parsed, and answered 2xx
only after its answer is committed to the gold table: if the write fails, Argilla's worker retries the delivery,
and a retry of an answer already landed commits nothing. Events that are not a submitted answer on one of our
datasets (webhooks are global to the server) are acknowledged and dropped. The HTTP side is a route of the
process's ASGI app (services/gateway/app.py); each delivery is handled on a worker thread: deliveries are few (one
per human answer) and each costs one small Delta MERGE.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel_feedback.services.annotation.gold import GoldResponse, from_webhook_event, land
from flywheel_feedback.services.annotation.webhooks import (
    ReplayGuard,
    WebhookRejectedError,
    verifier,
    verify_delivery,
)
from flywheel_feedback.services.gateway.body import BodyError, read_body
from flywheel_feedback.services.gateway.server import HttpServer
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.logs import redact

if TYPE_CHECKING:
    import argilla as rg

    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)

EVENTS = ["response.created", "response.updated"]
# called once an answer is in the gold table, with the Delta version that added it (None: it was already there)
Landed = Callable[[GoldResponse, int | None], None]


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str


class WebhookHandler:
    """Verification and landing, without HTTP (the HTTP layer below only moves bytes)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        secret: str,
        prefix: str,
        tolerance_s: float,
        on_landed: Landed | None = None,
    ) -> None:
        self._store = store
        self._webhook = verifier(secret)
        self._prefix = prefix
        self._tolerance = tolerance_s
        self._guard = ReplayGuard(ttl_s=2 * tolerance_s)
        self._on_landed = on_landed

    def handle(self, headers: dict[str, str], body: bytes) -> Outcome:
        try:
            msg_id = verify_delivery(self._webhook, headers, body, tolerance_s=self._tolerance)
            self._guard.claim(msg_id)
        except WebhookRejectedError as exc:
            log.warning("webhook refused (%d): %s", exc.status, exc.reason)
            return Outcome(exc.status, exc.reason)
        try:
            outcome = self._land(msg_id, body)
        except Exception:
            self._guard.release(msg_id)  # not landed: the sender's retry must get through
            log.exception("webhook %s: landing failed; answering 500 so that Argilla retries", msg_id)
            return Outcome(500, "could not land the response")
        self._guard.done(msg_id)
        return outcome

    def _land(self, msg_id: str, body: bytes) -> Outcome:
        try:
            event = json.loads(body)
        except ValueError:
            return Outcome(400, "the body is not JSON")
        if not isinstance(event, dict):
            return Outcome(400, "the body is not a JSON object")
        try:
            gold = from_webhook_event(event, prefix=self._prefix)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # Signed by Argilla but not the shape we know: retrying it would not help.
            log.error("webhook %s: unexpected %s event (%s: %s)", msg_id, event.get("type"), type(exc).__name__, exc)
            return Outcome(400, "unexpected event shape")
        if gold is None:
            return Outcome(200, f"ignored {event.get('type')}")
        version = land(self._store, [gold])
        where = "already in the gold table" if version is None else f"landed in gold version {version}"
        log.info("webhook %s: %s by %s on %s %s", msg_id, event.get("type"), gold.annotator, gold.interaction_id,
                 where)
        if self._on_landed is not None:
            self._on_landed(gold, version)
        return Outcome(200, "landed" if version is not None else "already landed")


class WebhookEndpoint:
    """The webhook route. Its handler may come later (`flywheel serve` learns the secret when it has registered
    the webhook with Argilla): until then deliveries get a 503, and Argilla's worker retries them."""

    def __init__(self, handler: WebhookHandler | None = None, *, max_body_bytes: int) -> None:
        self.handler = handler
        self._max_body = max_body_bytes

    def route(self, path: str) -> Route:
        return Route(path, self.receive, methods=["POST"])

    async def receive(self, request: Request) -> Response:
        handler = self.handler
        if handler is None:
            return _answer(Outcome(503, "not ready: the webhook secret is not known yet"), {"Retry-After": "5"})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            return _answer(Outcome(413, f"body over {self._max_body} bytes"))
        try:
            body = await read_body(request, max_bytes=self._max_body)
        except BodyError as exc:
            return _answer(Outcome(exc.status, f"body over {self._max_body} bytes"))
        return _answer(await run_in_threadpool(handler.handle, dict(request.headers), body))


def _answer(outcome: Outcome, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"status": outcome.status, "message": outcome.message}, status_code=outcome.status,
                        headers=headers)


class WebhookServer:
    """The app with the webhook route (and /healthz, /metrics) on its own port: `start` returns at once,
    `stop` answers the deliveries in hand and joins."""

    def __init__(self, handler: WebhookHandler, *, host: str, port: int, path: str, max_body_bytes: int) -> None:
        from flywheel_feedback.services.gateway.app import build_app, registry_metrics
        from flywheel_feedback.services.process_metrics import build_info

        self.endpoint = WebhookEndpoint(handler, max_body_bytes=max_body_bytes)
        registry = CollectorRegistry()
        build_info(registry)
        app = build_app(health=lambda: (True, {"status": "ok"}), metrics=registry_metrics(registry),
                        extra_routes=[self.endpoint.route(path)])
        self._http = HttpServer(app, host=host, port=port, name="webhooks")
        self.path = path

    @property
    def address(self) -> tuple[str, int]:
        return self._http.address

    @property
    def url(self) -> str:
        return f"{self._http.url}{self.path}"

    def start(self) -> WebhookServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()


# ---------------------------------------------------------------------------------------------------------------
# Registration with Argilla and the `serve` loop


def register_webhook(client: rg.Argilla, url: str, *, description: str = "flywheel annotation sync") -> Any:
    """A new Argilla webhook posting response events to `url` (its secret signs them). Webhooks already posting
    to `url` are deleted first: they are left by processes that did not stop cleanly, and Argilla's worker keeps
    trying to deliver to them."""
    import argilla as rg

    for stale in [w for w in client.webhooks if w.url == url]:
        stale.delete()
        log.info("deleted the stale Argilla webhook %s for %s", stale.id, url)
    webhook = rg.Webhook(url=url, events=list(EVENTS), description=description, _client=client)
    return webhook.create()


def unregister_webhook(webhook: Any) -> None:
    """Delete a webhook `register_webhook` created (at shutdown); one already gone is no error."""
    from argilla._exceptions import NotFoundError

    try:
        webhook.delete()
    except NotFoundError:
        return
    log.info("deleted the Argilla webhook for %s", webhook.url)


def connect_handler(
    store: ObjectStore,
    settings: AnnotationSettings,
    *,
    client: rg.Argilla,
    on_landed: Landed | None = None,
    on_registered: Callable[[Any], None] | None = None,
) -> WebhookHandler:
    """The handler for this process's deliveries: with FLYWHEEL_WEBHOOK_PUBLIC_URL, the webhook is registered
    with Argilla (replacing any stale one for that URL) and verified with the secret Argilla holds for it."""
    hook = settings.webhook
    secret = hook.secret.get_secret_value() if hook.secret else None
    if hook.public_url:
        registered = register_webhook(client, hook.public_url)
        if on_registered is not None:
            on_registered(registered)
        if secret and secret != registered.secret:
            # Argilla signs with the secret it holds for this webhook; any other would refuse every delivery.
            log.warning("FLYWHEEL_WEBHOOK_SECRET is not the secret Argilla holds for %s: using Argilla's",
                        hook.public_url)
        secret = registered.secret
        log.info("Argilla posts %s to %s", ", ".join(EVENTS), hook.public_url)
    if secret:
        redact(secret)  # the SDK and httpx print webhook objects with their secret
    if not secret:
        raise ValueError("set FLYWHEEL_WEBHOOK_SECRET, or FLYWHEEL_WEBHOOK_PUBLIC_URL to register the webhook")
    return WebhookHandler(store, secret=secret, prefix=settings.dataset_prefix, tolerance_s=hook.tolerance_s,
                          on_landed=on_landed)


def reconcile_until(store: ObjectStore, settings: AnnotationSettings, *, client: rg.Argilla,
                    stop: threading.Event) -> None:
    """Reconcile every `reconcile_every_s` until `stop` is set (a failed reconcile is retried next period)."""
    from flywheel_feedback.services.annotation.reconcile import reconcile

    while not stop.is_set():
        started = time.monotonic()
        try:
            result = reconcile(store, settings, client=client)
            if result.error is None and result.landed:
                log.info("reconcile landed %d responses a webhook had not", result.landed)
        except Exception:
            # The receiver keeps receiving: a failed reconcile is retried at the next period.
            log.exception("reconcile failed; next attempt in %.0fs", settings.reconcile_every_s)
        stop.wait(max(0.0, settings.reconcile_every_s - (time.monotonic() - started)))


def serve(
    store: ObjectStore,
    settings: AnnotationSettings,
    *,
    client: rg.Argilla | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[WebhookServer], None] | None = None,
) -> None:
    """Receive webhooks on host:port and reconcile every `reconcile_every_s` until `stop` is set (or Ctrl-C)."""
    from flywheel_feedback.services.annotation.client import connect

    hook = settings.webhook
    stop = stop or threading.Event()
    client = client or connect(settings)
    registered: list[Any] = []
    handler = connect_handler(store, settings, client=client, on_registered=registered.append)
    server = WebhookServer(handler, host=hook.host, port=hook.port, path=hook.path,
                           max_body_bytes=hook.max_body_bytes).start()
    log.info("receiving webhooks at %s", server.url)
    if on_ready is not None:
        on_ready(server)
    try:
        reconcile_until(store, settings, client=client, stop=stop)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for webhook in registered:  # Argilla's worker would keep delivering to a receiver that is gone
            unregister_webhook(webhook)
