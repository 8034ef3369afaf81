"""The annotation round trip against the real Argilla 2.8 stack of deploy/argilla.sh (OpenSearch, Redis, rq worker).

The lake comes from the real labeler over simulated traffic. Every test has its own lake directory and its own
dataset-name prefix, deletes the datasets and webhooks it created, and fails (never skips) when the stack's
FLYWHEEL_TEST_ARGILLA_* settings are missing. Responses are submitted as an annotator would: with the
annotator's own API key, one record at a time (POST /api/v1/records/{id}/responses, as the annotation UI does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from flywheel_feedback.labeling.pii import find_pii
from flywheel_feedback.services.annotation.gold import gold_version, read_gold_responses
from flywheel_feedback.services.annotation.layout import QUEUES
from flywheel_feedback.services.annotation.outbox import enqueue, pending_items, read_items, read_sent
from flywheel_feedback.services.annotation.push import push
from flywheel_feedback.services.annotation.receiver import WebhookHandler, WebhookServer, register_webhook, serve
from flywheel_feedback.services.annotation.reconcile import reconcile
from flywheel_feedback.services.annotation.webhooks import signed_headers
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.lake.labels import read_labels, replace_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.settings import AnnotationSettings, WebhookSettings
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig
from tests.conftest import REPO, free_port, require

pytestmark = pytest.mark.argilla

WAIT_S = 45.0
PLANTED = (
    "jane.roe+flywheel@example.org",
    "+44 20 7946 0958",
    "5500-0000-0000-0004",
    "sk-proj-abcdefghijklmnop0123456789",
    "ghp_0123456789abcdefghijklmnopqrstuv",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
)


@dataclass(frozen=True)
class Stack:
    url: str
    api_key: str
    annotator_api_key: str
    annotator_username: str


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack(
        url=require("FLYWHEEL_TEST_ARGILLA_URL"),
        api_key=require("FLYWHEEL_TEST_ARGILLA_API_KEY"),
        annotator_api_key=require("FLYWHEEL_TEST_ARGILLA_ANNOTATOR_API_KEY"),
        annotator_username=require("FLYWHEEL_TEST_ARGILLA_ANNOTATOR_USERNAME"),
    )


@pytest.fixture(scope="module")
def labeled_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake the real labeler has been over: simulated traffic, captured, labeled, routed to the outbox."""
    work = tmp_path_factory.mktemp("labeled")
    simulate_to_file(SimulationConfig(interactions=2_000, seed=11), work / "events.jsonl", work / "truth.parquet")
    store = LocalStore(work / "lake")
    capture_file(work / "events.jsonl", store)
    result = label_pass(store)
    assert result.changed and sum(result.queued.values()) >= 30, result
    return work / "lake"


@pytest.fixture
def lake(labeled_lake: Path, tmp_path: Path) -> LocalStore:
    """This test's own copy of the labeled lake."""
    shutil.copytree(labeled_lake, tmp_path / "lake")
    return LocalStore(tmp_path / "lake")


@pytest.fixture
def prefix(stack: Stack) -> Iterator[str]:
    """This test's dataset-name prefix; its datasets are deleted afterwards."""
    name = f"fw-test-{uuid.uuid4().hex[:10]}-"
    yield name
    owner = _owner(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for queue in QUEUES:
            dataset = owner.datasets(name=f"{name}{queue}", workspace="default")
            if dataset is not None:
                dataset.delete()


def settings_for(stack: Stack, prefix: str, **overrides: Any) -> AnnotationSettings:
    values: dict[str, Any] = {"url": stack.url, "api_key": stack.api_key, "dataset_prefix": prefix,
                              "retries": 1, "retry_backoff_s": 0.2}
    return AnnotationSettings(**(values | overrides))


def _owner(stack: Stack) -> Any:
    import argilla as rg

    return rg.Argilla(api_url=stack.url, api_key=stack.api_key)


class Annotator:
    """Submits answers the way the annotation UI does, with the annotator's own key."""

    def __init__(self, stack: Stack) -> None:
        import argilla as rg

        self.client = rg.Argilla(api_url=stack.url, api_key=stack.annotator_api_key)
        self.user = self.client.me
        owner = _owner(stack)
        workspace = owner.workspaces("default")
        if stack.annotator_username not in {u.username for u in workspace.users}:
            workspace.add_user(stack.annotator_username)

    def answer(self, record_id: Any, label: str, correction: str | None = None) -> None:
        answer_as(self.client, record_id, label, correction)


def answer_as(client: Any, record_id: Any, label: str, correction: str | None = None) -> None:
    from argilla._models import UserResponseModel

    values: dict[str, dict[str, Any]] = {"quality": {"value": label}}
    if correction is not None:
        values["corrected_output"] = {"value": correction}
    client.api.records.create_record_response(
        record_id, UserResponseModel(values=values, status="submitted", user_id=client.me.id))


def records_of(owner: Any, name: str) -> dict[str, Any]:
    """external id (the interaction id) -> record, as the owner sees them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = owner.datasets(name=name, workspace="default")
    assert dataset is not None, f"no dataset {name}"
    found: dict[str, Any] = {}
    for record in dataset.records(with_suggestions=True, with_responses=True, batch_size=500):
        assert record.id not in found, f"record {record.id} twice in {name}"
        found[record.id] = record
    return found


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(0.1)


def delete_webhooks(owner: Any, url: str) -> None:
    for webhook in owner.webhooks:
        if webhook.url == url:
            webhook.delete()


def texts_of(value: str | list[dict[str, str]]) -> list[str]:
    """A text field's value, or each message's content of a chat field."""
    return [value] if isinstance(value, str) else [m["content"] for m in value]


def plant_pii(store: LocalStore, ids: list[str]) -> None:
    """Personal data and secrets in the inputs, outputs, edits and corrections of these interactions."""
    labels = read_labels(store)
    assert labels is not None
    pii = " ".join(f"({text})" for text in PLANTED)
    hit = pl.col("interaction_id").is_in(ids)
    labels = labels.with_columns(
        [pl.when(hit).then(pl.col(c).fill_null("") + f" {pii}").otherwise(pl.col(c)).alias(c)
         for c in ("input_text", "output_text", "edited_text", "correction_text")]
    )
    replace_labels(store, labels)


# ---------------------------------------------------------------------------------------------------------------


def test_push_is_idempotent_and_no_planted_pii_reaches_argilla(stack: Stack, lake: LocalStore, prefix: str) -> None:
    items = read_items(lake)
    plant_pii(lake, items.get_column("interaction_id").to_list())
    settings = settings_for(stack, prefix, batch_size=25)
    said: list[str] = []

    first = push(lake, settings, progress=said.append)
    assert first.complete and first.sent == items.height, first
    assert any("records confirmed" in line for line in said)  # progress for long pushes
    assert pending_items(lake).is_empty() and read_sent(lake).height == items.height

    owner = _owner(stack)
    expected = {q: set(g.get_column("interaction_id")) for (q,), g in items.group_by("queue")}
    server_ids: dict[tuple[str, str], Any] = {}
    weak_labels_seen: set[str | None] = set()
    for queue, ids in expected.items():
        records = records_of(owner, f"{prefix}{queue}")
        assert set(records) == ids  # the record id is the interaction id
        for iid, record in records.items():
            server_ids[queue, iid] = record._server_id
            data = record.to_dict()
            blob = json.dumps(data, default=str)
            leaked = [text for text in PLANTED if text in blob]
            assert not leaked, f"{iid} in {queue} leaked {leaked}"
            for name, value in data["fields"].items():
                for text in texts_of(value):
                    assert not find_pii(text), (iid, name, text)
            assert data["metadata"]["queue"] == queue
            assert set(data["metadata"]) >= {"task", "model_version", "queue", "reason", "priority"}
            # the weak label is shown (metadata, signals), never a suggestion the UI would pre-select
            assert data["suggestions"] == {}, (iid, data["suggestions"])
            weak = data["metadata"].get("weak_label")
            if weak is not None:
                assert weak in ("good", "bad") and data["metadata"]["label_model"].startswith("LabelModel-")
                assert 0.0 <= data["metadata"]["weak_confidence"] <= 1.0
                assert f"**Weak label:** {weak}" in data["fields"]["signals"]
            weak_labels_seen.add(weak)

    assert weak_labels_seen & {"good", "bad"}  # some records have a weak label to show
    # what Argilla's API gives the annotation UI for a record: no suggestion to pre-fill its answer with, and the
    # weak label's metadata properties visible to annotators
    api = httpx.Client(base_url=stack.url, headers={"X-Argilla-Api-Key": stack.api_key})
    some_id = next(iter(server_ids.values()))
    assert api.get(f"/api/v1/records/{some_id}/suggestions").json() == {"items": []}
    dataset_id = owner.datasets(name=f"{prefix}{next(iter(expected))}", workspace="default").id
    Annotator(stack)  # a member of the workspace, to see the dataset as the UI shows it to annotators
    seen = httpx.get(f"{stack.url}/api/v1/me/datasets/{dataset_id}/metadata-properties",
                     headers={"X-Argilla-Api-Key": stack.annotator_api_key}).json()["items"]
    assert {p["name"] for p in seen} >= {"weak_label", "weak_confidence", "label_model"}

    # Nothing pending: a second push sends nothing.
    second = push(lake, settings)
    assert second.complete and second.sent == 0, second
    # Even sending everything again (as if the sent state were lost) updates the same records: no duplicates.
    again = push(lake, settings, resend=True)
    assert again.complete and again.sent == items.height, again
    for queue, ids in expected.items():
        records = records_of(owner, f"{prefix}{queue}")
        assert set(records) == ids
        assert all(records[iid]._server_id == server_ids[queue, iid] for iid in ids)
    assert read_sent(lake).height == items.height == read_items(lake).height  # marks updated in place, not added


def test_answers_arrive_by_webhook_and_the_labeler_uses_them(stack: Stack, lake: LocalStore, prefix: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/argilla-webhook"
    settings = settings_for(
        stack, prefix, reconcile_every_s=3600.0,  # reconcile runs once at start, before any answer
        webhook=WebhookSettings(public_url=url, host="127.0.0.1", port=port, tolerance_s=300),
    )
    assert push(lake, settings).complete
    owner = _owner(stack)
    annotator = Annotator(stack)
    stop = threading.Event()
    ready = threading.Event()
    server = threading.Thread(target=serve, args=(lake, settings),
                              kwargs={"stop": stop, "on_ready": lambda _: ready.set()}, daemon=True)
    server.start()
    try:
        assert ready.wait(60), "the receiver did not start"
        uncertain = records_of(owner, f"{prefix}uncertain")
        audit = records_of(owner, f"{prefix}audit")
        (u1, u2, u3), (a1,) = sorted(uncertain)[:3], sorted(audit)[:1]
        answered_at = time.monotonic()
        annotator.answer(uncertain[u1]._server_id, "bad", "Open Settings > Account > Reset password.")
        annotator.answer(uncertain[u2]._server_id, "good")
        annotator.answer(uncertain[u3]._server_id, "bad")
        annotator.answer(audit[a1]._server_id, "good")
        answer_as(owner, uncertain[u3]._server_id, "bad")  # a second annotator on one item

        gold = wait_for("4 + 1 answers landed by webhook",
                        lambda: g if (g := read_gold_responses(lake)).height == 5 else None)
        latency = time.monotonic() - answered_at
        print(f"\nwebhook-to-lake: 5 answers landed {latency:.2f}s after the first was submitted")
        assert set(gold.get_column("source")) == {"webhook"}
        rows = {(r["interaction_id"], r["annotator"]): r for r in gold.to_dicts()}
        who = stack.annotator_username
        assert rows[u1, who]["label"] == 0
        assert rows[u1, who]["correction"] == "Open Settings > Account > Reset password."
        assert rows[u2, who]["label"] == 1 and rows[u2, who]["correction"] is None
        assert rows[a1, who]["queue"] == "audit" and rows[a1, who]["label"] == 1
        assert rows[u3, "flywheel-owner"]["label"] == 0
        assert all(r["submitted_at"].tzinfo is not None for r in rows.values())
    finally:
        stop.set()
        server.join(timeout=30)
        delete_webhooks(owner, url)

    # The label model's next pass takes the gold labels (two annotators: cleanlab's consensus).
    result = label_pass(lake)
    assert result.changed and result.gold == 4, result
    labels = read_labels(lake)
    assert labels is not None
    human = {r["interaction_id"]: r for r in labels.filter(pl.col("source") == "human").to_dicts()}
    assert set(human) == {u1, u2, u3, a1}
    assert [human[i]["label"] for i in (u1, u2, u3, a1)] == [0, 1, 0, 1]
    assert human[u3]["annotators"] == 2

    # Answers are final: neither a second labeler pass (a full relabel routes over the whole recent window, here
    # auditing everything, so every rule has a say) nor a slice renewal puts an answered item in a queue again.
    from flywheel_feedback.labeling.routing import RoutingConfig, route
    from flywheel_feedback.services.labeler.pipeline import LabelerOptions

    answered = [u1, u2, u3, a1]
    queued_before = read_items(lake).filter(pl.col("interaction_id").is_in(answered))
    audit_all = RoutingConfig(audit_rate=1.0, budgets={"audit": None})
    assert label_pass(lake, force=True, options=LabelerOptions(routing=audit_all)).changed
    from flywheel_feedback.services.slices.build import renew
    from flywheel_feedback.services.slices.definitions import find_definition
    from tests.services.slices_helpers import write_definition

    write_definition(lake.root.parent / "definitions", "answered", size=300, min_gold_share=0.5)
    renewal = renew(lake, find_definition(lake.root.parent / "definitions", "answered"))
    assert renewal.published and renewal.queued > 0
    queued_after = read_items(lake).filter(pl.col("interaction_id").is_in(answered))
    relabeled = read_labels(lake)
    assert relabeled is not None
    would = route(relabeled.filter(pl.col("interaction_id").is_in(answered)).select(
        "interaction_id", "confidence", "is_issue", "label_quality", pl.col("explicit_label").alias("explicit"),
        "implicit_label"), config=audit_all, already_queued=queued_before.select("interaction_id", "queue"))
    assert would.height > 0, "the rules would queue an answered item again: what this checks"
    assert queued_after.select("interaction_id", "queue").sort(pl.all()).equals(
        queued_before.select("interaction_id", "queue").sort(pl.all()))


def test_reconcile_lands_answers_without_webhooks(stack: Stack, lake: LocalStore, prefix: str) -> None:
    settings = settings_for(stack, prefix)
    assert push(lake, settings, queues=["audit", "suspect"]).complete
    owner = _owner(stack)
    annotator = Annotator(stack)
    audit = records_of(owner, f"{prefix}audit")
    first, second = sorted(audit)[:2]
    annotator.answer(audit[first]._server_id, "good")
    annotator.answer(audit[second]._server_id, "bad", "A better reply.")
    answer_as(owner, audit[second]._server_id, "good")

    landed = reconcile(lake, settings)
    assert landed.error is None and (landed.seen, landed.landed) == (3, 3), landed
    gold = read_gold_responses(lake)
    assert set(gold.get_column("source")) == {"reconcile"}
    assert sorted(gold.select("interaction_id", "annotator", "label", "correction").rows()) == sorted([
        (first, stack.annotator_username, 1, None),
        (second, stack.annotator_username, 0, "A better reply."),
        (second, "flywheel-owner", 1, None),
    ])
    # Nothing new: nothing landed, nothing committed.
    files, version = lake.list("gold"), gold_version(lake)
    assert reconcile(lake, settings).landed == 0 and lake.list("gold") == files and gold_version(lake) == version

    # The annotator changes their mind: the new version lands, and readers keep it.
    response_id = gold.filter(pl.col("interaction_id") == first).get_column("response_id").item()
    annotator.client.http_client.put(
        f"/api/v1/responses/{response_id}",
        json={"values": {"quality": {"value": "bad"}}, "status": "submitted"},
    ).raise_for_status()
    assert reconcile(lake, settings).landed == 1
    latest = read_gold_responses(lake).filter(pl.col("interaction_id") == first)
    assert latest.select("label").item() == 0


def test_forged_and_replayed_deliveries_are_rejected(stack: Stack, lake: LocalStore, prefix: str) -> None:
    settings = settings_for(stack, prefix)
    assert push(lake, settings, queues=["audit"]).complete
    owner = _owner(stack)
    port = free_port()
    url = f"http://127.0.0.1:{port}/argilla-webhook"
    deliveries: list[tuple[dict[str, str], bytes, int]] = []

    class Recording(WebhookHandler):
        def handle(self, headers: dict[str, str], body: bytes) -> Any:
            outcome = super().handle(headers, body)
            deliveries.append(({k.lower(): v for k, v in headers.items()}, body, outcome.status))
            return outcome

    webhook = register_webhook(owner, url)
    server = None
    try:
        handler = Recording(lake, secret=webhook.secret, prefix=prefix, tolerance_s=300)
        server = WebhookServer(handler, host="127.0.0.1", port=port, path="/argilla-webhook",
                               max_body_bytes=1 << 20).start()
        audit = records_of(owner, f"{prefix}audit")
        target = sorted(audit)[0]
        Annotator(stack).answer(audit[target]._server_id, "bad")
        wait_for("Argilla's delivery", lambda: any(
            json.loads(body).get("data", {}).get("record", {}).get("external_id") == target
            for _, body, _ in deliveries))
        headers, body, status = next((h, b, s) for h, b, s in deliveries if target.encode() in b)
        assert status == 200
        assert read_gold_responses(lake).height == 1

        def post(hdrs: dict[str, str], payload: bytes) -> int:
            import urllib.error
            import urllib.request

            request = urllib.request.Request(server.url if server else "", data=payload, headers=hdrs)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as err:
                return int(err.code)

        keep = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")}
        assert post(keep, body) == 409  # Argilla's own delivery, replayed
        tampered = body.replace(b'"bad"', b'"good"')
        assert tampered != body and post(keep, tampered) == 401  # its signature on a changed body
        fresh_id, now = f"msg_{uuid.uuid4().hex}", int(time.time())
        forged = {**keep, **signed_headers(b"a guessed secret", fresh_id, now, tampered)}
        assert post(forged, tampered) == 401  # signed with the wrong secret
        old = now - 3600
        stale = {**keep, **signed_headers(webhook.secret, fresh_id, old, tampered)}
        assert post(stale, tampered) == 401  # the right secret, an hour late
        gold = read_gold_responses(lake, latest=False)
        assert gold.select("interaction_id", "label").rows() == [(target, 0)]
    finally:
        if server is not None:
            server.stop()
        webhook.delete()


# ---------------------------------------------------------------------------------------------------------------
# Argilla going away in the middle of a push


class CuttingProxy:
    """A TCP proxy on loopback in front of the real server. After the `cut_at`-th bulk upsert it forwards the
    request, lets the server do the work, then drops the connection instead of passing the answer back, and
    refuses every connection until `restore()`: Argilla committed a batch the client never heard about."""

    def __init__(self, upstream_url: str, *, cut_at: int) -> None:
        host_port = upstream_url.split("://", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._cut_at = cut_at
        self._bulk_requests = 0
        self._answer_pending_cut = False
        self.open = True
        self.cuts = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def restore(self) -> None:
        with self._lock:
            self.open = True

    def close(self) -> None:
        self._listener.close()
        self._drop_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if to_server and data.startswith(b"PUT ") and b"/records/bulk" in data.split(b"\r\n", 1)[0]:
                    with self._lock:
                        self._bulk_requests += 1
                        if self._bulk_requests == self._cut_at:
                            self._answer_pending_cut = True
                if not to_server and self._answer_pending_cut:
                    with self._lock:
                        self._answer_pending_cut = False
                        self.open = False
                        self.cuts += 1
                    self._drop_all()  # the server answered; the answer is lost
                    return
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            _close(s)

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv on it
    s.close()


def _single_queue_outbox(store: LocalStore, queue: str, n: int) -> list[str]:
    """Queue n labeled interactions in one queue (more than the simulated routing queues)."""
    labels = read_labels(store, columns=["interaction_id"])
    assert labels is not None
    ids = labels.get_column("interaction_id").sort().head(n).to_list()
    assert enqueue(store, pl.DataFrame({
        "interaction_id": ids, "queue": [queue] * n, "reason": ["test"] * n,
        "priority": [1.0 - k / n for k in range(n)]}), source="test") == n
    return ids


def _assert_all_once_in_argilla(owner: Any, name: str, ids: list[str]) -> None:
    records = records_of(owner, name)  # fails on a duplicate id
    assert sorted(records) == sorted(ids), (len(records), len(ids))


def test_a_push_cut_off_mid_batch_leaves_the_rest_pending_and_loses_nothing(
    stack: Stack, lake: LocalStore, prefix: str
) -> None:
    ids = _single_queue_outbox(lake, "renewal", 200)
    proxy = CuttingProxy(stack.url, cut_at=3)
    try:
        settings = settings_for(stack, prefix, url=proxy.url, batch_size=40)
        cut = push(lake, settings, queues=["renewal"])
        assert proxy.cuts == 1
        assert cut.error is not None and "did not answer" in cut.error, cut
        assert cut.sent == 80, cut  # batches 1 and 2; batch 3 reached Argilla but its answer never came back
        assert read_sent(lake).height == 80 and pending_items(lake, queues=["renewal"]).height == 120

        owner = _owner(stack)
        in_argilla = records_of(owner, f"{prefix}renewal")
        assert len(in_argilla) == 120  # Argilla did commit batch 3: unconfirmed is not the same as lost

        proxy.restore()
        rest = push(lake, settings, queues=["renewal"])
        assert rest.complete and rest.sent == 120, rest
        _assert_all_once_in_argilla(owner, f"{prefix}renewal", ids)
        assert read_sent(lake).height == 200 and pending_items(lake, queues=["renewal"]).is_empty()
        sent = read_items(lake).filter(pl.col("queue") == "renewal")
        assert sent.height == 200 and set(sent.get_column("dataset")) == {f"{prefix}renewal"}  # one row per item
    finally:
        proxy.close()


@pytest.mark.slow
def test_argilla_server_stopped_mid_push_then_back(stack: Stack, lake: LocalStore, prefix: str) -> None:
    """Stops the real argilla-server process (deploy/argilla.sh stop-server, by PID) after two batches, then
    starts it again: a few seconds of downtime for whoever else uses the stack."""
    ids = _single_queue_outbox(lake, "renewal", 150)
    script = REPO / "deploy" / "argilla.sh"
    env = {**os.environ}

    def run(verb: str) -> None:
        done = subprocess.run([str(script), verb], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"argilla.sh {verb}: {done.stderr[-2000:]}"

    confirmed: list[str] = []

    def progress(line: str) -> None:
        if "records confirmed" in line:
            confirmed.append(line)
            if len(confirmed) == 2:
                run("stop-server")  # synchronously: the next batch meets a stopped server

    settings = settings_for(stack, prefix, batch_size=30, retries=2, retry_backoff_s=0.3)
    try:
        stopped = push(lake, settings, queues=["renewal"], progress=progress)
        assert stopped.error is not None and stopped.sent == 60, stopped
        assert pending_items(lake, queues=["renewal"]).height == 90
    finally:
        run("start-server")
    back = push(lake, settings, queues=["renewal"])
    assert back.complete and back.sent == 90, back
    _assert_all_once_in_argilla(_owner(stack), f"{prefix}renewal", ids)
    assert read_sent(lake).height == 150


def test_a_push_to_an_unreachable_argilla_keeps_everything_pending(lake: LocalStore) -> None:
    settings = AnnotationSettings(url=f"http://127.0.0.1:{free_port()}", api_key="unused", retries=0,
                                  dataset_prefix="fw-nowhere-")
    result = push(lake, settings)
    assert result.error is not None and result.sent == 0
    assert result.pending == read_items(lake).height == pending_items(lake).height


def test_the_cli_pushes_and_pulls_without_printing_secrets(stack: Stack, lake: LocalStore, prefix: str) -> None:
    from typer.testing import CliRunner

    from flywheel_feedback.services.cli import app

    env = {"FLYWHEEL_ARGILLA_URL": stack.url, "FLYWHEEL_ARGILLA_API_KEY": stack.api_key,
           "FLYWHEEL_ARGILLA_DATASET_PREFIX": prefix, "FLYWHEEL_LAKE_URL": str(lake.root)}
    runner = CliRunner()
    pushed = runner.invoke(app, ["annotate", "push", "--queue", "audit"], env=env)
    assert pushed.exit_code == 0, pushed.output
    n = read_items(lake).filter(pl.col("queue") == "audit").height
    assert f"{prefix}audit: {n}/{n} records confirmed" in pushed.output
    assert f"sent {n} records" in pushed.output

    audit = records_of(_owner(stack), f"{prefix}audit")
    Annotator(stack).answer(audit[sorted(audit)[0]]._server_id, "good")
    pulled = runner.invoke(app, ["annotate", "pull"], env=env)
    assert pulled.exit_code == 0, pulled.output
    assert "1 submitted responses in Argilla, 1 new in the lake" in pulled.output
    assert stack.api_key not in pushed.output + pulled.output

    refused = runner.invoke(app, ["annotate", "push", "--queue", "audit", "--resend"],
                            env={**env, "FLYWHEEL_ARGILLA_URL": f"http://127.0.0.1:{free_port()}",
                                 "FLYWHEEL_ARGILLA_RETRIES": "0"})
    assert refused.exit_code == 1 and "unreachable" in refused.output


def test_a_record_argilla_refuses_holds_back_only_itself(stack: Stack, prefix: str) -> None:
    """A 422 on a batch: the batch is sent record by record; the refused record stays pending."""
    from flywheel_feedback.services.annotation.datasets import ensure_dataset
    from flywheel_feedback.services.annotation.push import _send_batch
    from flywheel_feedback.services.annotation.records import RecordPayload

    owner = _owner(stack)
    settings = settings_for(stack, prefix)
    name = f"{prefix}audit"
    dataset = ensure_dataset(owner, name=name, workspace="default", min_submitted=1)
    fields: dict[str, Any] = {"conversation": [{"role": "user", "content": "Reset my password"}],
                              "output": "Open Settings.", "signals": "nothing recorded"}
    payloads = [
        RecordPayload("ok-1", "audit", fields, {"queue": "audit", "priority": 0.5}),
        RecordPayload("refused", "audit", fields, {"queue": "audit", "priority": "high"}),  # not a float
        RecordPayload("ok-2", "audit", fields, {"queue": "audit", "priority": 0.4}),
    ]
    assert _send_batch(owner, settings, threading.Event(), dataset.id, name, payloads) == ["ok-1", "ok-2"]
    assert sorted(records_of(owner, name)) == ["ok-1", "ok-2"]


def test_a_draft_is_recreated_and_someone_elses_dataset_is_left_alone(stack: Stack, prefix: str) -> None:
    import argilla as rg

    from flywheel_feedback.services.annotation.datasets import ensure_dataset, find_dataset

    owner = _owner(stack)

    def foreign(name: str) -> Any:
        settings = rg.Settings(fields=[rg.TextField(name="text", client=owner)],
                               questions=[rg.LabelQuestion(name="topic", labels=["a", "b"], client=owner)])
        return rg.Dataset(name=name, workspace="default", settings=settings, client=owner)

    # A creation cut short after the dataset row, before its fields and publishing: a draft.
    draft = foreign(f"{prefix}audit")
    owner.api.datasets.create(draft.api_model())
    found = find_dataset(owner, name=f"{prefix}audit", workspace="default")
    assert found is not None and found.api_model().status == "draft"
    dataset = ensure_dataset(owner, name=f"{prefix}audit", workspace="default", min_submitted=1)
    assert dataset.api_model().status == "ready" and dataset.id != found.id
    assert {q.name for q in dataset.settings.questions} == {"quality", "corrected_output"}

    foreign(f"{prefix}suspect").create()
    with pytest.raises(ValueError, match="was not created by flywheel"):
        ensure_dataset(owner, name=f"{prefix}suspect", workspace="default", min_submitted=1)
    assert find_dataset(owner, name=f"{prefix}suspect", workspace="default") is not None  # untouched


def test_a_dataset_of_an_older_layout_gains_the_weak_label_metadata(stack: Stack, lake: LocalStore,
                                                                   prefix: str) -> None:
    """A queue dataset made before the weak label moved from suggestions to metadata is kept, given the new
    metadata properties, loses the suggestions its records had, and takes the push."""
    import argilla as rg

    from flywheel_feedback.services.annotation.datasets import ensure_dataset
    from flywheel_feedback.services.annotation.layout import LATER_METADATA

    owner = _owner(stack)
    queue = str(read_items(lake).item(0, "queue"))
    name = f"{prefix}{queue}"
    old = older_settings(owner, queue)
    for prop in list(old.metadata):
        if prop.name in LATER_METADATA:
            old.metadata.remove(prop)
    made = rg.Dataset(name=name, workspace="default", settings=old, client=owner).create()
    assert not {m.name for m in made.settings.metadata} & set(LATER_METADATA)
    # a record as an older flywheel pushed it: the weak label as a suggestion, which the UI pre-selects
    fields = {"input": "Reset my password", "output": "Open Settings.", "signals": "nothing recorded"}
    made.records.log([rg.Record(id="older-1", fields=fields, metadata={"queue": queue},
                                suggestions=[rg.Suggestion("quality", "good", score=0.9, agent="LabelModel-old")])])
    assert records_of(owner, name)["older-1"].to_dict()["suggestions"] != {}
    dataset = ensure_dataset(owner, name=name, workspace="default", min_submitted=1, queue=queue)
    assert dataset.id == made.id  # the same dataset, not a new one
    assert metadata_names(owner, name) >= set(LATER_METADATA)
    assert records_of(owner, name)["older-1"].to_dict()["suggestions"] == {}
    assert push(lake, settings_for(stack, prefix), queues=[queue]).complete
    metadata = [r.to_dict()["metadata"] for r in records_of(owner, name).values()]
    assert any("weak_label" in m for m in metadata)


def metadata_names(owner: Any, name: str) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = owner.datasets(name=name, workspace="default")
    return {m.name for m in dataset.settings.metadata}


def older_settings(owner: Any, queue: str) -> Any:
    """Our layout as flywheel made it before the conversation field: the input as a text field."""
    import argilla as rg

    from flywheel_feedback.services.annotation.layout import dataset_settings

    settings = dataset_settings(owner, min_submitted=1, queue=queue)
    fields = [rg.TextField(name="input", title="User input", client=owner),
              *(f for f in settings.fields if f.name != "conversation")]
    return rg.Settings(guidelines=settings.guidelines, fields=fields, questions=list(settings.questions),
                       metadata=list(settings.metadata), distribution=settings.distribution)


# ---------------------------------------------------------------------------------------------------------------
# chat interactions: the annotator sees the whole conversation

# A support chat as the capture keeps it: system prompt, an earlier turn, a tool result, the user's last message.
CHAT = [
    {"role": "system", "content": "You are Acme's support assistant. Never read out account data."},
    {"role": "user", "content": f"I cannot sign in. Mail me at {PLANTED[0]} or call {PLANTED[1]}."},
    {"role": "assistant", "content": "Sorry to hear that. Which error do you see?"},
    {"role": "tool", "content": f"account lookup: card {PLANTED[2]}, api key {PLANTED[3]}"},
    {"role": "user", "content": "It says the password expired. How do I reset it?"},
]


def plant_chat(store: LocalStore, iid: str) -> None:
    """Make `iid` a chat interaction whose messages carry personal data and secrets, unmasked (as if an older or
    foreign writer had skipped masking): the push must mask them on its own."""
    labels = read_labels(store)
    assert labels is not None
    hit = pl.col("interaction_id") == iid
    replace_labels(store, labels.with_columns(
        pl.when(hit).then(pl.lit(json.dumps(CHAT))).otherwise(pl.col("input_messages")).alias("input_messages"),
        pl.when(hit).then(pl.lit(CHAT[-1]["content"])).otherwise(pl.col("input_text")).alias("input_text"),
    ))


def test_a_chat_record_shows_the_whole_conversation_in_order_with_pii_masked(
    stack: Stack, lake: LocalStore, prefix: str
) -> None:
    items = read_items(lake)
    queue = str(items.item(0, "queue"))
    in_queue = items.filter(pl.col("queue") == queue).get_column("interaction_id").to_list()
    planted = in_queue[0]
    plant_chat(lake, planted)
    assert push(lake, settings_for(stack, prefix), queues=[queue]).complete

    owner = _owner(stack)
    name = f"{prefix}{queue}"
    dataset = owner.datasets(name=name, workspace="default")
    api = httpx.Client(base_url=stack.url, headers={"X-Argilla-Api-Key": stack.api_key})
    fields = api.get(f"/api/v1/datasets/{dataset.id}/fields").json()["items"]
    assert {f["name"]: f["settings"]["type"] for f in fields} == {
        "conversation": "chat", "output": "text", "user_edit": "text", "signals": "text"}

    # read back through the REST API, as the annotation UI gets it
    found = api.post(f"/api/v1/me/datasets/{dataset.id}/records/search", params={"limit": 1000},
                     json={"query": {}}).json()["items"]
    by_id = {r["record"]["external_id"]: r["record"] for r in found}
    assert set(by_id) == set(in_queue)
    messages = by_id[planted]["fields"]["conversation"]
    assert [m["role"] for m in messages] == [m["role"] for m in CHAT]
    assert messages[0]["content"] == CHAT[0]["content"] and messages[2]["content"] == CHAT[2]["content"]
    assert messages[4]["content"] == CHAT[4]["content"]  # the user's last message, which the output answers
    assert messages[1]["content"] == "I cannot sign in. Mail me at [EMAIL_1] or call [PHONE_1]."
    assert "[CARD_1]" in messages[3]["content"] and "[KEY_1]" in messages[3]["content"]
    blob = json.dumps(by_id[planted])
    assert not [text for text in PLANTED if text in blob]
    assert not [t for m in messages if (t := find_pii(m["content"]))]

    # every other record of the queue: its whole input, the labels' conversation or the prompt as one message
    labels = read_labels(lake)
    assert labels is not None
    inputs = {r["interaction_id"]: r for r in labels.filter(pl.col("interaction_id").is_in(in_queue))
              .select("interaction_id", "input_text", "input_messages").to_dicts()}
    chats = 0
    for iid in in_queue[1:]:
        shown = by_id[iid]["fields"]["conversation"]
        kept = inputs[iid]["input_messages"]
        if kept is None:
            assert shown == [{"role": "user", "content": inputs[iid]["input_text"] or "(empty)"}]
        else:
            chats += 1
            assert [m["role"] for m in shown] == [m["role"] for m in json.loads(kept)]
            assert [m["content"] for m in shown] == [m["content"] or "(empty)" for m in json.loads(kept)]
    assert chats > 0, "the simulated traffic routed no chat interaction here: what this part checks"


def test_an_older_dataset_keeps_its_input_text_field_and_shows_the_conversation_there(
    stack: Stack, lake: LocalStore, prefix: str
) -> None:
    """argilla-server refuses a new field on a published dataset: a dataset made before the conversation field
    keeps its layout, and a chat's input field holds the whole conversation as `role: content` paragraphs."""
    import argilla as rg

    items = read_items(lake)
    queue = str(items.item(0, "queue"))
    planted = str(items.filter(pl.col("queue") == queue).item(0, "interaction_id"))
    plant_chat(lake, planted)
    owner = _owner(stack)
    name = f"{prefix}{queue}"
    made = rg.Dataset(name=name, workspace="default", settings=older_settings(owner, queue), client=owner).create()
    assert push(lake, settings_for(stack, prefix), queues=[queue]).complete

    dataset = owner.datasets(name=name, workspace="default")
    assert dataset.id == made.id and {f.name for f in dataset.settings.fields} == {
        "input", "output", "user_edit", "signals"}
    text = records_of(owner, name)[planted].to_dict()["fields"]["input"]
    paragraphs = text.split("\n\n")
    assert [p.split(": ", 1)[0] for p in paragraphs] == [m["role"] for m in CHAT]
    assert paragraphs[-1] == f"user: {CHAT[-1]['content']}"
    assert not [t for t in PLANTED if t in text] and not find_pii(text)
