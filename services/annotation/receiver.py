"""The webhook receiver (`flywheel annotate serve`): Argilla's signed deliveries in, gold labels out.

A delivery is verified (signature, timestamp window, replay) before its body is even parsed, and answered 2xx
only after its answer is committed to the gold table: if the write fails, Argilla's worker retries the delivery,
and a retry of an answer already landed commits nothing. Events that are not a submitted answer on one of our
datasets (webhooks are global to the server) are acknowledged and dropped. Standard library HTTP server, one
thread per delivery: deliveries are few (one per human answer) and each costs one small Delta MERGE.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from flywheel_feedback.services.annotation.gold import GoldResponse, from_webhook_event, land
from flywheel_feedback.services.annotation.webhooks import (
    ReplayGuard,
    WebhookRejectedError,
    decode_secret,
    verify_signature,
)
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
        self._key = decode_secret(secret)
        self._prefix = prefix
        self._tolerance = tolerance_s
        self._guard = ReplayGuard(ttl_s=2 * tolerance_s)
        self._on_landed = on_landed

    def handle(self, headers: dict[str, str], body: bytes) -> Outcome:
        try:
            msg_id = verify_signature(self._key, headers, body, tolerance_s=self._tolerance)
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


class WebhookServer:
    """A threaded HTTP server around a WebhookHandler; `start` returns at once, `stop` joins."""

    def __init__(self, handler: WebhookHandler, *, host: str, port: int, path: str, max_body_bytes: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _request_handler(handler, path, max_body_bytes))
        # stop() waits for the deliveries in hand (each bounded by the handler's socket timeout).
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-server", daemon=True)
        self.path = path

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self.path}"

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _request_handler(handler: WebhookHandler, path: str, max_body: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "flywheel-webhooks"
        timeout = 30  # seconds a client may take to send its delivery

        def do_GET(self) -> None:
            # liveness for compose and Kubernetes probes: the receiver thread answers
            if self.path.split("?", 1)[0].rstrip("/") == "/healthz":
                self._answer(Outcome(200, "ok"))
            else:
                self._answer(Outcome(404, "unknown path"))

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != path:
                self._answer(Outcome(404, "unknown path"))
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._answer(Outcome(411, "Content-Length required"))
                return
            if length < 0 or length > max_body:
                self._answer(Outcome(413, f"body over {max_body} bytes"))
                return
            body = self.rfile.read(length)
            self._answer(handler.handle({k: v for k, v in self.headers.items()}, body))

        def _answer(self, outcome: Outcome) -> None:
            payload = json.dumps({"status": outcome.status, "message": outcome.message}).encode()
            self.send_response(outcome.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


# ---------------------------------------------------------------------------------------------------------------
# Registration with Argilla and the `serve` loop


def register_webhook(client: rg.Argilla, url: str, *, description: str = "flywheel annotation sync") -> Any:
    """The Argilla webhook posting response events to `url`, created if missing (its secret signs them)."""
    import argilla as rg

    for webhook in client.webhooks:
        if webhook.url == url:
            events = sorted(str(getattr(e, "value", e)) for e in webhook.events)
            if events != sorted(EVENTS) or not webhook.enabled:
                webhook.events = list(EVENTS)
                webhook.enabled = True
                webhook.update()
            return webhook
    webhook = rg.Webhook(url=url, events=list(EVENTS), description=description, _client=client)
    return webhook.create()


def serve(
    store: ObjectStore,
    settings: AnnotationSettings,
    *,
    client: rg.Argilla | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[WebhookServer], None] | None = None,
) -> None:
    """Receive webhooks and reconcile every `reconcile_every_s` until `stop` is set (or Ctrl-C)."""
    from flywheel_feedback.services.annotation.client import connect
    from flywheel_feedback.services.annotation.reconcile import reconcile

    hook = settings.webhook
    stop = stop or threading.Event()
    client = client or connect(settings)
    secret = hook.secret.get_secret_value() if hook.secret else None
    if hook.public_url:
        registered = register_webhook(client, hook.public_url)
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
    handler = WebhookHandler(store, secret=secret, prefix=settings.dataset_prefix, tolerance_s=hook.tolerance_s)
    server = WebhookServer(handler, host=hook.host, port=hook.port, path=hook.path,
                           max_body_bytes=hook.max_body_bytes).start()
    log.info("receiving webhooks at %s", server.url)
    if on_ready is not None:
        on_ready(server)
    try:
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
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
