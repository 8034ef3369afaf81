"""The Argilla stack of deploy/argilla.sh, driven end to end through the argilla 2.8 SDK.

Needs a running stack (`deploy/argilla.sh start`, or deploy/stack.sh with FLYWHEEL_WITH_ARGILLA=1) and its
FLYWHEEL_TEST_ARGILLA_* variables (`deploy/argilla.sh env`). Without them the test fails: a missing Argilla
must never pass silently.

What it proves: the server answers with a real OpenSearch behind it; a dataset can be created (its index is
created with index.knn=false, which needs the k-NN plugin); records are logged and found by a full-text
search; an annotator (its own API key) submits a response, which the server writes into the search index
with a painless script, so a filter on the response finds the record; the owner reads the response back;
and the rq worker delivers a signed `response.created` webhook to a local HTTP server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.argilla

ENV_VARS = (
    "FLYWHEEL_TEST_ARGILLA_URL",
    "FLYWHEEL_TEST_ARGILLA_API_KEY",
    "FLYWHEEL_TEST_ARGILLA_ANNOTATOR_API_KEY",
    "FLYWHEEL_TEST_ARGILLA_ANNOTATOR_USERNAME",
)
WEBHOOK_TIMEOUT_S = 30.0
LABELS = ["positive", "negative"]


@dataclass(frozen=True)
class ArgillaEnv:
    url: str
    api_key: str
    annotator_api_key: str
    annotator_username: str


def _argilla_env() -> ArgillaEnv:
    missing = [name for name in ENV_VARS if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"the Argilla stack is not configured: {', '.join(missing)} not set. Start it with "
            "`deploy/argilla.sh start` and export the lines of `deploy/argilla.sh env` "
            "(deploy/stack.sh does both when FLYWHEEL_WITH_ARGILLA=1).",
            pytrace=False,
        )
    return ArgillaEnv(*(os.environ[name] for name in ENV_VARS))


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


class _Receiver(BaseHTTPRequestHandler):
    deliveries: queue.Queue[Delivery]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.deliveries.put(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """A tiny HTTP server on a free loopback port that queues every POST it receives."""
    deliveries: queue.Queue[Delivery] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"deliveries": deliveries})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/argilla-webhook", deliveries
    finally:
        server.shutdown()
        server.server_close()


def _verify_signature(secret: str, delivery: Delivery) -> None:
    """Standard Webhooks: v1,base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), key from the whsec_ secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{delivery.headers['webhook-id']}.{delivery.headers['webhook-timestamp']}.".encode() + delivery.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [sig.split(",", 1)[1] for sig in delivery.headers["webhook-signature"].split() if sig.startswith("v1,")]
    assert any(hmac.compare_digest(expected, sig) for sig in offered), "webhook signature does not verify"


def _wait_for_event(
    deliveries: queue.Queue[Delivery], event_type: str, external_id: str
) -> tuple[Delivery, dict[str, Any]]:
    deadline = time.monotonic() + WEBHOOK_TIMEOUT_S
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            delivery = deliveries.get(timeout=left)
        except queue.Empty:
            break
        event = json.loads(delivery.body)
        seen.append(event.get("type", "?"))
        if event.get("type") == event_type and event["data"]["record"]["external_id"] == external_id:
            return delivery, event
    raise AssertionError(
        f"no {event_type} webhook for record {external_id} within {WEBHOOK_TIMEOUT_S:.0f}s "
        f"(received: {seen or 'nothing'}); is the rq worker (python -m argilla_server worker) running?"
    )


def _poll(fetch: Any, check: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_argilla_stack_end_to_end(webhook_receiver: tuple[str, queue.Queue[Delivery]]) -> None:
    argilla_env = _argilla_env()
    import argilla as rg

    # The server runs on a real OpenSearch (the search engine it reports about itself).
    status = requests.get(
        f"{argilla_env.url}/api/v1/status", headers={"X-Argilla-Api-Key": argilla_env.api_key}, timeout=30
    )
    status.raise_for_status()
    engine = status.json()["search_engine"]["version"]
    assert engine["distribution"] == "opensearch", engine

    owner = rg.Argilla(api_url=argilla_env.url, api_key=argilla_env.api_key)
    annotator = rg.Argilla(api_url=argilla_env.url, api_key=argilla_env.annotator_api_key)
    annotator_user = annotator.me
    assert annotator_user.username == argilla_env.annotator_username
    assert annotator_user.role == "annotator"

    workspace = owner.workspaces("default")
    assert workspace is not None, "the stack has no 'default' workspace"
    if argilla_env.annotator_username not in {user.username for user in workspace.users}:
        workspace.add_user(argilla_env.annotator_username)

    webhook_url, deliveries = webhook_receiver
    unique = uuid.uuid4().hex[:12]
    name = f"fw-stack-test-{unique}"
    token = f"zebra{unique}"  # a word no other record (of any test) contains
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=LABELS)],
    )
    dataset = rg.Dataset(name=name, workspace="default", settings=settings, client=owner)
    webhook = rg.Webhook(
        url=webhook_url, events=["response.created"], description=f"flywheel test {name}", _client=owner
    )
    created_dataset = created_webhook = False
    try:
        webhook.create()
        created_webhook = True
        dataset.create()
        created_dataset = True

        texts = {
            f"{name}-0": "The answer was copied straight into the report.",
            f"{name}-1": f"The user asked again: the {token} answer was wrong.",
            f"{name}-2": "Nobody read the reply; the session was abandoned.",
        }
        dataset.records.log([rg.Record(id=rid, fields={"text": text}) for rid, text in texts.items()])
        assert {r.id for r in dataset.records} == set(texts)

        # Full-text search runs in OpenSearch (simple_query_string over the record fields).
        hits = [r.id for r in dataset.records(query=token)]
        assert hits == [f"{name}-1"], hits

        # The annotator sees the dataset in its workspace and submits a response through the record API
        # (POST /api/v1/records/{id}/responses with its own key, as the annotation UI does; listing all
        # records of a dataset is for owners and admins, so the record is taken from the owner's view).
        seen = annotator.datasets(name=name, workspace="default")
        assert seen is not None, "the annotator cannot see the dataset"
        assert seen.id == dataset.id
        target = next(r for r in dataset.records if r.id == f"{name}-1")
        target.responses.add(rg.Response("label", "negative", user_id=annotator_user.id, status="submitted"))
        annotator.api.records.create_record_responses(target.api_model())

        # The owner reads it back.
        def fetch_target() -> Any:
            return next(r for r in dataset.records(with_responses=True) if r.id == f"{name}-1")

        back = _poll(fetch_target, lambda r: len(r.responses["label"]) > 0)
        values = [(resp.value, str(resp.user_id), resp.status.value) for resp in back.responses["label"]]
        assert values == [("negative", str(annotator_user.id), "submitted")], values
        assert back.status == "completed"

        # The response reached the index through a painless update script: a filter on it finds the record.
        negative = rg.Query(filter=rg.Filter([("label.response", "==", "negative")]))
        by_response = _poll(lambda: [r.id for r in dataset.records(query=negative)], lambda ids: ids == [f"{name}-1"])
        assert by_response == [f"{name}-1"], by_response

        # The rq worker delivered the signed response.created event to our receiver.
        delivery, event = _wait_for_event(deliveries, "response.created", f"{name}-1")
        _verify_signature(webhook.secret, delivery)
        assert event["data"]["values"] == {"label": {"value": "negative"}}
        assert event["data"]["record"]["dataset"]["name"] == name
    finally:
        if created_dataset:
            dataset.delete()
        if created_webhook:
            webhook.delete()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns that the dataset is not found: that is the point
        assert owner.datasets(name=name, workspace="default") is None
    assert all(w.url != webhook_url for w in owner.webhooks)
