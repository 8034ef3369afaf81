"""The gateway's parts with nothing running: interaction tokens, splitting a batch into its events' bytes,
admission, the rate limit, keys and settings (.env). And the real uvicorn with no Kafka behind it: 503s."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flywheel_feedback.client import interaction_token
from flywheel_feedback.services.gateway.backpressure import Admission, BusyError
from flywheel_feedback.services.gateway.body import BodyError, split_events
from flywheel_feedback.services.gateway.keys import BrowserKey, KeyRing, ServerKey, load_keys_file
from flywheel_feedback.services.gateway.ratelimit import RateLimiter
from flywheel_feedback.services.gateway.tokens import check_token
from flywheel_feedback.services.settings import GatewaySettings
from tests.conftest import REPO, free_port

from .gateway_helpers import SERVER_KEY, auth, dumps, feedback, gateway_settings, running_gateway

SECRET = b"the server's secret"

# ---------------------------------------------------------------------------------------------- tokens


def test_a_token_is_the_documented_algorithm() -> None:
    """What the README tells other languages to do gives the same token as the Python client."""
    now, iid = 1_800_000_000, "i-42/ü"
    token = interaction_token(SECRET, iid, ttl=3600, now=now)
    expiry = now + 3600
    encoded = base64.urlsafe_b64encode(iid.encode()).rstrip(b"=").decode()
    payload = f"v1.{expiry}.{encoded}"
    mac = base64.urlsafe_b64encode(hmac.new(SECRET, payload.encode(), hashlib.sha256).digest()).rstrip(b"=")
    assert token == f"{payload}.{mac.decode()}"
    assert interaction_token(SECRET.decode(), iid, ttl=3600, now=now) == token  # a str secret is its UTF-8


def test_tokens_are_checked_for_signature_expiry_and_interaction() -> None:
    now = time.time()
    good = interaction_token(SECRET, "i-1", ttl=60, now=now)
    assert check_token(good, secret=SECRET, interaction_id="i-1", now=now) is None
    assert check_token(good, secret=b"another secret", interaction_id="i-1", now=now) == "forged"
    assert check_token(good, secret=SECRET, interaction_id="i-2", now=now) == "other_interaction"
    assert check_token(good, secret=SECRET, interaction_id="i-1", now=now + 61) == "expired"
    version, expiry, iid, mac = good.split(".")
    assert check_token(f"{version}.{int(expiry) + 999}.{iid}.{mac}", secret=SECRET, interaction_id="i-1",
                       now=now) == "forged"  # a later expiry under the same signature
    for bad in ("v2." + good[3:], "v1.x.y", "v1.12.abc.def.ghi", "é" * 10, 42, "x" * 3000):
        assert check_token(bad, secret=SECRET, interaction_id="i-1", now=now) == "malformed", bad
    assert check_token(None, secret=SECRET, interaction_id="i-1", now=now) == "missing"
    with pytest.raises(ValueError, match="positive ttl"):
        interaction_token(SECRET, "i-1", ttl=0)


# ---------------------------------------------------------------------------------------------- bodies


def test_an_array_is_split_into_each_events_own_bytes() -> None:
    events = [b'{"a": 1,\n "b": [1, 2]}', b'{"c": "\\u00e9]"}', b"NaN", b'"x"', b'{"big": 9007199254740993}']
    body = b" [ " + b" ,\n".join(events) + b" ]\n"
    split = split_events(body, max_events=10)
    assert split.batch and split.items == events
    assert split_events(b'{"a": 1}', max_events=10).items == [b'{"a": 1}']
    not_utf8 = b'[{"a": "\xff"}]'
    assert split_events(not_utf8, max_events=10).items == [b'{"a": "\xff"}']  # capture rejects it, not us


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"", 400), (b"  ", 400), (b"[]", 400), (b"[1, 2", 400), (b"[1 2]", 400), (b"[1] x", 400),
     (b"[" + b",".join([b"1"] * 11) + b"]", 413), (b"[" * 100_000, 400)],
)
def test_a_broken_body_is_refused_as_a_whole(body: bytes, status: int) -> None:
    with pytest.raises(BodyError) as info:
        split_events(body, max_events=10)
    assert info.value.status == status


# ---------------------------------------------------------------------------------------------- limits


def test_admission_bounds_bytes_and_requests_and_refuses_while_kafka_stalls() -> None:
    admission = Admission(max_bytes=100, max_requests=2, stall_s=0.2, cooldown_s=0.2, retry_after_s=3)
    first = admission.admit(60)
    with pytest.raises(BusyError, match="bytes") as info:
        admission.admit(50)
    assert info.value.retry_after_s == 3
    second = admission.admit(40)
    with pytest.raises(BusyError, match="requests"):
        admission.admit(0)
    admission.release(first)
    admission.release(first)  # twice changes nothing
    assert (admission.bytes, admission.requests) == (40, 1)
    admission.producing(second)
    assert admission.refusal(10) is None
    time.sleep(0.25)
    assert "not acknowledged" in (admission.refusal(10) or "")
    admission.release(second)
    assert admission.refusal(10) is None
    admission.failed()
    assert "failed" in (admission.refusal(10) or "")
    time.sleep(0.25)
    assert admission.refusal(100) is None


def test_the_rate_limit_is_a_token_bucket_per_key() -> None:
    limiter = RateLimiter()
    assert limiter.take("k", 10, rate_per_s=2, burst=10, now=0) == 0
    assert limiter.take("k", 1, rate_per_s=2, burst=10, now=0) == pytest.approx(0.5)
    assert limiter.take("other", 10, rate_per_s=2, burst=10, now=0) == 0  # each key its own bucket
    assert limiter.take("k", 1, rate_per_s=2, burst=10, now=0.5) == 0
    assert limiter.take("k", 4, rate_per_s=2, burst=10, now=100) == 0  # refills up to the burst only
    assert limiter.take("k", 7, rate_per_s=2, burst=10, now=100) == pytest.approx(0.5)
    assert limiter.empty("k", rate_per_s=2, burst=10, now=100) == 0  # 6 left, nothing spent
    assert limiter.take("k", 6, rate_per_s=2, burst=10, now=100) == 0
    assert limiter.empty("k", rate_per_s=2, burst=10, now=100) == pytest.approx(0.5)
    assert limiter.empty("never-seen", rate_per_s=2, burst=10, now=100) == 0


# ---------------------------------------------------------------------------------------------- keys


def test_keys_are_checked_and_never_shown() -> None:
    server = ServerKey(id="backend", key=SecretStr("s" * 20))
    browser = BrowserKey(id="web", key=SecretStr("b" * 20), origins=["https://App.Example.com"])
    ring = KeyRing([server, browser], token_secret=SecretStr("t" * 20))
    assert ring.find("s" * 20) is server and ring.find("b" * 20) is browser and ring.find("x" * 20) is None
    assert ring.origins == {"https://app.example.com"}
    assert "s" * 20 not in repr(server) and "b" * 20 not in repr(ring.find("b" * 20))
    with pytest.raises(ValueError, match="token secret"):
        KeyRing([browser])
    with pytest.raises(ValueError, match="same key"):
        KeyRing([server, ServerKey(id="again", key=SecretStr("s" * 20))])
    with pytest.raises(ValueError, match="id"):
        KeyRing([server, ServerKey(id="backend", key=SecretStr("z" * 20))])
    with pytest.raises(ValueError, match="at least 16"):
        ServerKey(id="short", key=SecretStr("abc"))
    with pytest.raises(ValueError, match="pattern"):
        BrowserKey(id="web", key=SecretStr("b" * 20), origins=["app.example.com/path"])


def test_a_keys_file_and_dotenv_configure_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[server]]\nid = "backend"\nkey = "' + "s" * 20 + '"\napp = "bot"\n\n'
                    '[[browser]]\nid = "web"\nkey = "' + "b" * 20 + '"\norigins = ["https://app.example.com"]\n'
                    'rate_per_s = 5\ntoken_secret = "' + "t" * 20 + '"\n')
    (tmp_path / ".env").write_text(f"FLYWHEEL_GATEWAY_KEYS_FILE={keys}\nFLYWHEEL_KAFKA_BOOTSTRAP_SERVERS=kafka:9092\n"
                                   "FLYWHEEL_CAPTURE_TOPIC=from-dotenv\nFLYWHEEL_GATEWAY_PORT=9000\n")
    monkeypatch.chdir(tmp_path)
    for name in ("FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS", "FLYWHEEL_CAPTURE_TOPIC", "FLYWHEEL_GATEWAY_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_GATEWAY_PORT", "9001")  # the environment wins over .env
    settings = GatewaySettings()
    assert (settings.kafka.bootstrap_servers, settings.topic, settings.port) == ("kafka:9092", "from-dotenv", 9001)
    ring = settings.keyring()
    found = ring.find("b" * 20)
    assert len(ring) == 2 and isinstance(found, BrowserKey) and found.rate_per_s == 5
    assert ring.token_secret(found) == b"t" * 20
    keys.write_text('[[server]]\nid = "backend"\n')
    with pytest.raises(ValueError, match=r"\[\[server\]\] number 1: key: Field required"):
        load_keys_file(keys)
    keys.write_text("[[admin]]\n")
    with pytest.raises(ValueError, match="admin"):
        load_keys_file(keys)


# ---------------------------------------------------------------------------------------------- no Kafka


def test_without_kafka_the_gateway_answers_503_with_retry_after_and_accepts_nothing() -> None:
    settings = gateway_settings(f"127.0.0.1:{free_port()}", "nowhere", retry_after_s=3)
    with running_gateway(settings, wait_for_kafka=False) as url:
        answer = httpx.post(f"{url}/v1/events", content=dumps(feedback("i-1")), headers=auth(SERVER_KEY))
        assert answer.status_code == 503 and answer.headers["retry-after"] == "3", answer.text
        assert answer.json()["status"] == "unavailable"
        batch = httpx.post(f"{url}/v1/events", content=dumps([feedback("i-1"), {"type": "x"}]),
                           headers=auth(SERVER_KEY))
        assert batch.status_code == 503
        assert [r["status"] for r in batch.json()["results"]] == ["unavailable", "rejected"]
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503 and health.json()["components"]["gateway"]["kafka"] == "connecting"
        assert httpx.post(f"{url}/v1/events", content=b"{}").status_code == 401
        assert httpx.get(f"{url}/metrics").headers["content-type"].startswith("text/plain")
        assert json.loads(httpx.get(f"{url}/healthz").text)["status"] == "failing"


def test_the_node_helper_makes_the_same_token() -> None:
    """clients/node/interaction-token.mjs (for servers in other languages) agrees with the Python client."""
    helper = REPO / "clients" / "node" / "interaction-token.mjs"
    script = (f"import {{ interactionToken }} from {json.dumps(helper.as_uri())};\n"
              "console.log(interactionToken('the server\\'s secret', 'i-42/ü', 3600, 1800000000.7));")
    done = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == interaction_token(SECRET, "i-42/ü", ttl=3600, now=1_800_000_000.7)


def test_the_otlp_module_s_routes_are_mounted_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam for OTLP: `services.gateway.otlp_route.otlp_routes(settings, keys=, metrics=, otlp_metrics=)` is
    mounted beside /v1/events, with the gateway's keys, counting into the gateway's registry."""
    import sys
    import types

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from flywheel_feedback.services.gateway.app import OTLP_MODULE
    from flywheel_feedback.services.gateway.metrics import GatewayMetrics
    from flywheel_feedback.services.otlp.metrics import OtlpMetrics
    from flywheel_feedback.services.settings import OtlpSettings

    seen: list[object] = []
    counted: list[object] = []
    stops: list[str] = []

    async def stopped() -> None:
        stops.append("stopped")

    async def traces(request: Request) -> Response:
        return JSONResponse({"gateway": request.app.state.gateway is not None})

    def routes(
        settings: OtlpSettings, *, keys: KeyRing, metrics: GatewayMetrics, otlp_metrics: OtlpMetrics | None = None,
        on_stop: Callable[[Callable[[], Awaitable[None]]], None] | None = None,
    ) -> list[Route]:
        seen.append(settings)
        assert keys.find(SERVER_KEY) is not None
        counted.append(otlp_metrics)
        assert on_stop is not None
        on_stop(stopped)
        return [Route("/v1/traces", traces, methods=["POST"])]

    fake = types.ModuleType(OTLP_MODULE)
    fake.otlp_routes = routes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, OTLP_MODULE, fake)
    settings = gateway_settings(f"127.0.0.1:{free_port()}", "nowhere")
    with running_gateway(settings, wait_for_kafka=False) as url:
        answer = httpx.post(f"{url}/v1/traces", content=b"")
        assert answer.status_code == 200 and answer.json() == {"gateway": True}
    # the traces' interactions go to the gateway's topic, through its broker
    assert seen == [OtlpSettings(topic=settings.topic, kafka=settings.kafka, max_event_bytes=settings.max_event_bytes)]
    assert len(counted) == 1 and isinstance(counted[0], OtlpMetrics)
    assert stops == ["stopped"]  # what the routes registered ran when the gateway stopped
