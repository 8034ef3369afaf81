"""The gateway's keys and abuse rules, over real HTTP against the real uvicorn and Kafka: a browser key cannot
send an interaction, cannot post from an origin not allowed and is rate limited; forged, expired and
other-interaction tokens are refused with a reason and counted; the webhook route refuses a bad signature; no key
or token reaches a log."""

from __future__ import annotations

import base64
import logging
import time
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry

from flywheel_feedback.client import interaction_token
from flywheel_feedback.services.annotation.receiver import WebhookEndpoint, WebhookHandler
from flywheel_feedback.services.annotation.webhooks import signed_headers
from flywheel_feedback.services.gateway.app import Gateway, build_app, registry_metrics
from flywheel_feedback.services.gateway.server import HttpServer
from flywheel_feedback.services.lake.store import LocalStore

from .gateway_helpers import (
    APP_KEY,
    BROWSER_KEY,
    ORIGIN,
    SECRETS,
    SERVER_KEY,
    TOKEN_SECRET,
    auth,
    consume,
    dumps,
    feedback,
    gateway_settings,
    interaction,
    metric,
    running_gateway,
)

pytestmark = pytest.mark.kafka


def test_keys_origins_types_tokens_and_rate_limits(
    kafka_bootstrap: str, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the libraries' included
    run = uuid.uuid4().hex[:8]
    iid = f"{run}-i1"
    good = interaction_token(TOKEN_SECRET, iid, ttl=600)
    forged = interaction_token("a guessed secret", iid, ttl=600)
    expired = interaction_token(TOKEN_SECRET, iid, ttl=60, now=time.time() - 120)
    other = interaction_token(TOKEN_SECRET, f"{run}-someone-elses", ttl=600)
    tampered = good.rsplit(".", 3)[0] + "." + str(int(time.time()) + 10**6) + "." + good.rsplit(".", 2)[1] + "." + \
        good.rsplit(".", 1)[1]  # a later expiry under the original signature
    browser = auth(BROWSER_KEY, origin=ORIGIN)
    with running_gateway(gateway_settings(kafka_bootstrap, kafka_topic)) as url, httpx.Client(base_url=url) as http:
        def post(body: object, headers: dict[str, str]) -> httpx.Response:
            return http.post("/v1/events", content=dumps(body), headers=headers)

        # no key, an unknown key
        assert post(feedback(iid), {"Content-Type": "application/json"}).status_code == 401
        unknown = post(feedback(iid), auth("pk_guessed_" + "x" * 20))
        assert unknown.status_code == 401 and unknown.json()["code"] == "unknown_key"

        # a browser key cannot send an interaction, alone or in a batch
        refused = post({**interaction(iid), "interaction_token": good}, browser)
        assert refused.status_code == 403 and refused.json()["code"] == "browser_type", refused.text
        mixed = post([{**interaction(iid), "interaction_token": good}, {**feedback(iid), "interaction_token": good}],
                     browser).json()
        assert [r.get("code") for r in mixed["results"]] == ["browser_type", None]

        # ... nor post from an origin it does not allow (nor without an Origin: not from a browser page)
        for origin in ("https://evil.example.net", "http://app.example.com", None):
            answer = post({**feedback(iid), "interaction_token": good}, auth(BROWSER_KEY, origin=origin))
            assert answer.status_code == 403 and answer.json()["code"] == "origin", origin
            assert "access-control-allow-origin" not in answer.headers
        # preflights: the allowed origin gets the CORS headers, another none
        preflight = http.options("/v1/events", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        assert "POST" in preflight.headers["access-control-allow-methods"]
        evil = http.options("/v1/events", headers={"Origin": "https://evil.example.net",
                                                   "Access-Control-Request-Method": "POST"})
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
        # a server key is for servers: a browser page sending it is refused
        leaked = post(interaction(iid), auth(SERVER_KEY, origin=ORIGIN))
        assert leaked.status_code == 403 and leaked.json()["code"] == "server_key_in_browser"
        # a key bound to an app sends that app's interactions only
        assert post(interaction(iid, app="support-bot"), auth(APP_KEY)).status_code == 200
        other_app = post(interaction(f"{run}-i9", app="billing"), auth(APP_KEY))
        assert other_app.status_code == 403 and other_app.json()["code"] == "app"

        # tokens: missing, forged, tampered, expired, for another interaction; each refused with its reason
        cases = {"token_missing": None, "token_forged": forged, "token_expired": expired,
                 "token_other_interaction": other, "token_malformed": "v1.not-a-token"}
        time.sleep(3)  # the key's bucket refills (2 events/s, burst 10)
        for code, token in cases.items():
            event = feedback(iid) if token is None else {**feedback(iid), "interaction_token": token}
            answer = post(event, browser)
            assert answer.status_code == 403 and answer.json()["code"] == code, (code, answer.text)
            assert answer.json()["reason"]
            assert answer.headers["access-control-allow-origin"] == ORIGIN  # the page can read why
        assert post({**feedback(iid), "interaction_token": tampered}, browser).json()["code"] == "token_forged"
        for problem, count in {"missing": 1, "forged": 2, "expired": 1, "other_interaction": 1, "malformed": 1}.items():
            assert metric(url, "flywheel_gateway_token_rejections_total", problem=problem) == count, problem
        time.sleep(3.5)
        accepted = post({**feedback(iid, "dwell", dwell_ms=800), "interaction_token": good}, browser)
        assert accepted.status_code == 200, accepted.text

        # the rate limit: 10 at once, then 2 per second
        assert post([{**feedback(iid), "interaction_token": good} for _ in range(11)], browser).status_code == 413
        statuses = [post({**feedback(iid), "interaction_token": good}, browser) for _ in range(12)]
        limited = [a for a in statuses if a.status_code == 429]
        assert limited, [a.status_code for a in statuses]
        assert int(limited[0].headers["retry-after"]) >= 1 and limited[0].json()["code"] == "rate_limited"
        assert limited[0].headers["access-control-allow-origin"] == ORIGIN
        assert metric(url, "flywheel_gateway_rate_limited_total", key="web") == len(limited)

    landed = consume(kafka_bootstrap, kafka_topic, expect=2)
    assert all(b"interaction_token" not in m.value for m in landed)
    for secret in (*SECRETS, good, forged, expired, other, "pk_guessed_"):
        assert secret not in caplog.text, "a key or token reached the log"


def test_the_webhook_route_refuses_a_bad_signature(kafka_bootstrap: str, kafka_topic: str, tmp_path: object) -> None:
    """The Argilla webhook as a route of the same app as /v1/events (as `flywheel serve` mounts it)."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    secret = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    store = LocalStore(tmp_path)
    registry = CollectorRegistry()
    gateway = Gateway(gateway_settings(kafka_bootstrap, kafka_topic), registry)
    webhook = WebhookEndpoint(max_body_bytes=1 << 16)
    app = build_app(health=lambda: (True, {"status": "ok"}), metrics=registry_metrics(registry), gateway=gateway,
                    extra_routes=[webhook.route("/argilla-webhook")])
    body = b'{"type":"record.completed","data":{}}'
    with HttpServer(app, host="127.0.0.1", port=0) as server, httpx.Client(base_url=server.url) as http:
        hook_headers = {**signed_headers(secret, "msg_1", int(time.time()), body), "Content-Type": "application/json"}
        assert http.post("/argilla-webhook", content=body, headers=hook_headers).status_code == 503  # not armed yet
        webhook.handler = WebhookHandler(store, secret=secret, prefix="fw-", tolerance_s=300)
        bad = {**signed_headers(b"a guessed secret", "msg_2", int(time.time()), body)}
        answer = http.post("/argilla-webhook", content=body, headers=bad)
        assert answer.status_code == 401 and "signature" in answer.json()["message"].lower()
        assert http.post("/argilla-webhook", content=body, headers=hook_headers).status_code == 200
        assert http.get("/healthz").status_code == 200
        assert http.post("/v1/events", content=body, headers=hook_headers).status_code == 401  # no gateway key
    assert store.list("gold") == []
