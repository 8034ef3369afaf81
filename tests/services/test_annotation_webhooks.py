"""Unit tests of the webhook receiver: Standard Webhooks signatures verified by the `standardwebhooks` package
(good, forged, tampered, stale, from the future, replayed), and the webhook route of the HTTP app landing a
signed delivery as a gold label. Nothing else running: the deliveries are signed here, the way Argilla's worker
signs them."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel_feedback.services.annotation.gold import read_gold_responses
from flywheel_feedback.services.annotation.receiver import Outcome, WebhookHandler, WebhookServer
from flywheel_feedback.services.annotation.webhooks import (
    ReplayGuard,
    WebhookRejectedError,
    decode_secret,
    signed_headers,
    verifier,
    verify_delivery,
)
from flywheel_feedback.services.lake.store import LocalStore

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()  # Argilla's form: plain base64
KEY = decode_secret(SECRET)
BODY = b'{"type":"response.created","data":{}}'


def headers(body: bytes = BODY, *, msg_id: str = "msg_1", ts: int | None = None, key: bytes = KEY) -> dict[str, str]:
    return signed_headers(key, msg_id, int(time.time()) if ts is None else ts, body)


def verify(hdrs: dict[str, str], body: bytes = BODY, *, tolerance_s: float = 300) -> str:
    return verify_delivery(verifier(SECRET), hdrs, body, tolerance_s=tolerance_s)


def test_a_good_signature_verifies() -> None:
    assert verify(headers()) == "msg_1"
    # header names are case-insensitive; several signatures (a secret being rotated) may be offered
    now = int(time.time())
    other = signed_headers(b"old-secret", "msg_1", now, BODY)["webhook-signature"]
    mixed = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now),
             "Webhook-Signature": f"{other} {headers(ts=now)['webhook-signature']}"}
    assert verify(mixed) == "msg_1"


def test_the_secret_may_carry_the_whsec_prefix() -> None:
    assert decode_secret("whsec_" + SECRET) == KEY
    assert decode_secret(SECRET.rstrip("=")) == KEY  # unpadded base64 too
    assert verify(headers(key=decode_secret("whsec_" + SECRET))) == "msg_1"
    with pytest.raises(ValueError, match="base64"):
        decode_secret("not base64 at all!")


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("wrong secret", lambda: (headers(key=b"another-secret"), BODY)),
        ("tampered body", lambda: (headers(), BODY.replace(b"created", b"deleted"))),
        ("tampered id", lambda: ({**headers(), "webhook-id": "msg_2"}, BODY)),
        ("tampered timestamp", lambda: ({**headers(), "webhook-timestamp": str(int(time.time()) - 1)}, BODY)),
        ("unknown version", lambda: ({**headers(), "webhook-signature": headers()["webhook-signature"]
                                      .replace("v1,", "v2,")}, BODY)),
        ("malformed entry", lambda: ({**headers(), "webhook-signature": "v1"}, BODY)),
    ],
)
def test_a_forged_delivery_is_rejected(case: str, make: Any) -> None:
    hdrs, body = make()
    with pytest.raises(WebhookRejectedError) as info:
        verify(hdrs, body)
    assert info.value.status == 401, case


def test_a_stale_or_future_delivery_is_rejected_even_with_a_good_signature() -> None:
    now = int(time.time())
    assert verify(headers(ts=now - 290)) == "msg_1"
    for ts in (now - 310, now + 310):
        with pytest.raises(WebhookRejectedError, match="tolerance") as info:
            verify(headers(ts=ts))
        assert info.value.status == 401
    # a narrower window than the package's five minutes
    with pytest.raises(WebhookRejectedError, match="tolerance 60s"):
        verify(headers(ts=now - 120), tolerance_s=60)


def test_missing_or_malformed_headers_are_rejected() -> None:
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        hdrs = headers()
        del hdrs[name]
        with pytest.raises(WebhookRejectedError) as info:
            verify(hdrs)
        assert info.value.status == 400
    with pytest.raises(WebhookRejectedError, match="Unix seconds"):
        verify({**headers(), "webhook-timestamp": "2026-11-27T09:00:00Z"})
    with pytest.raises(WebhookRejectedError, match="UTF-8") as info:
        verify(headers(), b"\xff\xfe")
    assert info.value.status == 400


def test_a_replayed_id_is_rejected_until_the_window_has_passed() -> None:
    guard = ReplayGuard(ttl_s=600)
    guard.claim("msg_1", now=0)
    with pytest.raises(WebhookRejectedError) as info:
        guard.claim("msg_1", now=1)  # still in flight
    assert info.value.status == 409
    guard.done("msg_1", now=1)
    with pytest.raises(WebhookRejectedError):
        guard.claim("msg_1", now=500)
    guard.claim("msg_1", now=700)  # forgotten after the window: the timestamp check refuses it by then


def test_a_failed_landing_releases_the_id_so_the_retry_gets_through() -> None:
    guard = ReplayGuard(ttl_s=600)
    guard.claim("msg_1", now=0)
    guard.release("msg_1")
    guard.claim("msg_1", now=1)


def test_the_guard_forgets_the_oldest_ids_beyond_its_size() -> None:
    guard = ReplayGuard(ttl_s=600, max_entries=2)
    for n in range(3):
        guard.claim(f"m{n}", now=n)
        guard.done(f"m{n}", now=n)
    guard.claim("m0", now=3)  # evicted
    with pytest.raises(WebhookRejectedError):
        guard.claim("m2", now=3)


# ---------------------------------------------------------------------------------------------------------------
# The HTTP receiver, with deliveries signed here


def response_event(*, dataset: str = "fw-audit", status: str = "submitted", label: str = "bad") -> bytes:
    record = {"id": "rec-1", "external_id": "i-42", "status": "completed", "fields": {}, "metadata": {"queue": "audit"},
              "dataset": {"name": dataset}}
    data = {"id": "resp-1", "values": {"quality": {"value": label}, "corrected_output": {"value": "Better."}},
            "status": status, "record": record, "user": {"id": "u-1", "username": "ann"},
            "inserted_at": "2026-11-27T09:00:00.000001", "updated_at": "2026-11-27T09:00:00.000001"}
    return json.dumps({"type": "response.created", "version": 1, "timestamp": "2026-11-27T09:00:00.1Z",
                       "data": data}).encode()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[WebhookServer, LocalStore]]:
    store = LocalStore(tmp_path)
    handler = WebhookHandler(store, secret=SECRET, prefix="fw-", tolerance_s=300)
    server = WebhookServer(handler, host="127.0.0.1", port=0, path="/hook", max_body_bytes=64 * 1024).start()
    try:
        yield server, store
    finally:
        server.stop()


def post(url: str, body: bytes, hdrs: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={**hdrs, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if err.headers.get_content_type() == "application/json" else text


def signed(body: bytes, msg_id: str | None = None, ts: int | None = None) -> dict[str, str]:
    return headers(body, msg_id=msg_id or f"msg_{secrets.token_urlsafe(8)}", ts=ts or int(time.time()))


def test_a_signed_delivery_lands_a_gold_label_and_its_replay_is_rejected(
    receiver: tuple[WebhookServer, LocalStore],
) -> None:
    server, store = receiver
    body = response_event()
    hdrs = signed(body)
    assert post(server.url, body, hdrs) == (200, {"status": 200, "message": "landed"})
    gold = read_gold_responses(store)
    assert gold.select("interaction_id", "queue", "annotator", "label", "correction", "source").rows() == [
        ("i-42", "audit", "ann", 0, "Better.", "webhook")]
    assert post(server.url, body, hdrs)[0] == 409  # the same delivery again
    assert read_gold_responses(store, latest=False).height == 1


def test_the_receiver_answers_health_probes(receiver: tuple[WebhookServer, LocalStore]) -> None:
    server, _ = receiver
    with urllib.request.urlopen(server.url.replace("/hook", "/healthz"), timeout=10) as answer:
        assert answer.status == 200


def test_forged_stale_and_oversized_deliveries_land_nothing(receiver: tuple[WebhookServer, LocalStore]) -> None:
    server, store = receiver
    body = response_event()
    forged = headers(body, msg_id="msg_forged", ts=int(time.time()), key=b"guessed-secret")
    assert post(server.url, body, forged)[0] == 401
    tampered = response_event(label="good")
    assert post(server.url, tampered, signed(body))[0] == 401
    assert post(server.url, body, signed(body, ts=int(time.time()) - 3600))[0] == 401
    assert post(server.url, body, {})[0] == 400
    assert post(server.url, b"x" * (65 * 1024), signed(b"x" * (65 * 1024)))[0] == 413
    assert post(server.url.replace("/hook", "/other"), body, signed(body))[0] == 404
    assert store.list("gold") == []


def test_events_that_are_not_submitted_answers_on_our_datasets_are_acknowledged_and_dropped(
    receiver: tuple[WebhookServer, LocalStore],
) -> None:
    server, store = receiver
    for body in (response_event(status="draft"), response_event(dataset="someone-elses-audit"),
                 json.dumps({"type": "record.completed", "data": {}}).encode()):
        assert post(server.url, body, signed(body))[0] == 200
    assert post(server.url, b"[1, 2]", signed(b"[1, 2]"))[0] == 400
    odd = json.dumps({"type": "response.created", "data": {"record": "not an object"}}).encode()
    assert post(server.url, odd, signed(odd)) == (400, {"status": 400, "message": "unexpected event shape"})
    assert store.list("gold") == []


class FailingOnce:
    """A lake that fails the first time a table is reached (S3 down), delegating to a real local store."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def table_uri(self, name: str) -> str:
        if not self.failed:
            self.failed = True
            raise OSError("the lake is unreachable")
        return self.inner.table_uri(name)


def test_a_delivery_that_could_not_land_is_answered_500_and_its_retry_lands(tmp_path: Path) -> None:
    store = FailingOnce(LocalStore(tmp_path))
    handler = WebhookHandler(store, secret=SECRET, prefix="fw-", tolerance_s=300)
    body = response_event()
    hdrs = signed(body)
    assert handler.handle(hdrs, body).status == 500
    assert handler.handle(hdrs, body).status == 200  # the same id again: a retry, not a replay
    assert read_gold_responses(store.inner).height == 1


def test_a_delivery_landed_again_after_a_restart_adds_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    body = response_event()
    hdrs = signed(body)
    first = WebhookHandler(store, secret=SECRET, prefix="fw-", tolerance_s=300)
    assert first.handle(hdrs, body) == Outcome(200, "landed")
    restarted = WebhookHandler(store, secret=SECRET, prefix="fw-", tolerance_s=300)  # its replay guard is empty
    assert restarted.handle(hdrs, body) == Outcome(200, "already landed")
    assert read_gold_responses(store, latest=False).height == 1


def test_the_receivers_metrics_carry_build_info_and_pass_promtool(receiver: tuple[WebhookServer, LocalStore]) -> None:
    from .metrics_helpers import promtool_check, samples, scrape

    server, _ = receiver
    host, port = server.address
    text = scrape(f"http://{host}:{port}")
    assert [k for k in samples(text) if k[0] == "flywheel_build_info"]
    promtool_check(text)
