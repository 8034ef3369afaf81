"""The browser library (clients/web/) in Debian's headless Chromium against the real gateway and Kafka.

The example page is served from a loopback origin other than the gateway's, so every send is a CORS request with a
publishable browser key and the interaction token the example server made. Playwright (playwright-core, with
Chromium's own executable) plays six users: copying a selection and through the copy button, editing a drafted
reply and sending it, keeping the answer on screen then scrolling away and switching tabs, closing the page right
away, copying and rating while offline then reconnecting, regenerating an answer (the server sends the retry).
Each user's events are in Kafka exactly once with the right fields, capture writes them to a lake, and the
labeler's features for each interaction show them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from flywheel_feedback.labeling.features import interaction_features
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore
from tests.conftest import require, unique

from .gateway_helpers import SERVER_KEY, TOKEN_SECRET, consume, gateway_settings, running_gateway
from .kafka_helpers import capture_settings, capture_until
from .web_helpers import WEB, built

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BROWSER_KEY = "pk_test_web_" + "w" * 24
SCENARIOS = WEB / "test" / "browser" / "scenarios.mjs"
# events per scenario: the server's interactions and retry, and what the page sends
EXPECTED = {
    "copy": {"interaction": 1, "copy": 2, "dwell": 1},
    "edit": {"interaction": 1, "edit": 1, "dwell": 1},
    "dwell_and_tab_switch": {"interaction": 1, "dwell": 1, "abandon": 1},
    "close": {"interaction": 1, "dwell": 1, "abandon": 1},
    "offline": {"interaction": 1, "copy": 1, "rating": 1, "dwell": 1},
    "regenerate": {"interaction": 2, "dwell": 2, "retry": 1, "rating": 1},
}
SERVER_SENT = ("interaction", "retry")
FIELDS = {  # the fields each type arrives with: nothing else left the page (and the token was removed)
    "copy": {"chars"}, "edit": {"text"}, "dwell": {"dwell_ms"}, "abandon": {"reason"}, "rating": {"thumbs"},
    "retry": {"new_interaction_id", "schema_version"},  # the server's, from the pydantic contract
}
ENVELOPE = {"event_id", "type", "ts", "interaction_id"}


def example_server() -> ModuleType:
    path = WEB / "example" / "serve.py"
    spec = importlib.util.spec_from_file_location("flywheel_web_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Run:
    did: dict[str, dict[str, Any]]  # per scenario, what the driver reports
    sent: list[dict[str, Any]]  # the requests the page made to the gateway (headers, body)
    events: dict[str, list[dict[str, Any]]]  # the topic's events by interaction id
    lake: pl.DataFrame
    features: pl.DataFrame


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    print(built())
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed: run deploy/chromium.sh (the README's test command does)"
    bootstrap = require("FLYWHEEL_TEST_KAFKA_BOOTSTRAP")
    topic = unique("test-web")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    example = example_server()
    config = example.Config(gateway="", server_key=SERVER_KEY, browser_key=BROWSER_KEY, token_secret=TOKEN_SECRET,
                            client={"flushMs": 200, "retryMs": 200, "maxRetryMs": 800})
    page_server = example.make_server(config)
    serving = threading.Thread(target=page_server.serve_forever, daemon=True)
    serving.start()
    page_url = f"http://127.0.0.1:{page_server.server_address[1]}/"
    browser_keys = [{"id": "web", "key": BROWSER_KEY, "origins": [page_url.rstrip("/")], "rate_per_s": 200,
                     "burst": 200}]
    try:
        with running_gateway(gateway_settings(bootstrap, topic, browser_keys=browser_keys)) as gateway_url:
            assert gateway_url.rstrip("/") != page_url.rstrip("/")  # another origin than the page's: CORS
            config.gateway = gateway_url
            from_page = {name: sum(n for kind, n in counts.items() if kind not in SERVER_SENT)
                         for name, counts in EXPECTED.items()}
            done = subprocess.run(["node", str(SCENARIOS), page_url, chromium, gateway_url, json.dumps(from_page)],
                                  cwd=WEB, capture_output=True, text=True, timeout=180, check=False)
            assert done.returncode == 0, done.stderr[-4000:]
            driven = json.loads(done.stdout.strip().splitlines()[-1])
            expected = sum(sum(counts.values()) for counts in EXPECTED.values())
            messages = consume(bootstrap, topic, expect=expected, timeout_s=30)
        events: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            event = json.loads(message.value)
            assert message.key == event["interaction_id"].encode()
            events.setdefault(event["interaction_id"], []).append(event)
        lake = tmp_path_factory.mktemp("web") / "lake"
        store = LocalStore(lake)
        capture_until(capture_settings(bootstrap, topic, str(lake)), store,
                      lambda: read_events(store).height >= len(messages))
        frame = read_events(store)
        yield Run(driven["results"], driven["sent"], events, frame, interaction_features(frame))
    finally:
        page_server.shutdown()
        page_server.server_close()
        admin.delete_topics([topic, f"{topic}.dlq"])
        admin.close()


def of(run: Run, scenario: str, *, also: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The scenario's events on the topic, checked: each exactly once, with exactly its type's fields."""
    ids = [run.did[scenario]["iid"], *also]
    found = [e for iid in ids for e in run.events.get(iid, [])]
    assert Counter(e["type"] for e in found) == EXPECTED[scenario], found
    assert len({e["event_id"] for e in found}) == len(found)
    for event in found:
        if event["type"] != "interaction":
            assert set(event) - ENVELOPE <= FIELDS[event["type"]], event
    lake_ids = run.lake.filter(pl.col("interaction_id").is_in(ids)).get_column("event_id").sort().to_list()
    assert lake_ids == sorted(e["event_id"] for e in found)  # the lake holds the same events, once
    return found


def features(run: Run, iid: str) -> dict[str, Any]:
    rows = run.features.filter(pl.col("interaction_id") == iid).to_dicts()
    assert len(rows) == 1
    return rows[0]


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (event,) = [e for e in events if e["type"] == kind]
    return event


def test_selecting_and_copying_and_the_copy_button_send_copies_with_their_lengths(run: Run) -> None:
    events = of(run, "copy")
    copies = sorted(e["chars"] for e in events if e["type"] == "copy")
    assert copies == sorted(run.did["copy"]["chars"])
    row = features(run, run.did["copy"]["iid"])
    assert row["copied"] is True and row["abandoned_explicit"] is False and row["n_feedback"] == 3


def test_an_edited_draft_that_is_sent_is_an_edit_with_the_kept_text(run: Run) -> None:
    events = of(run, "edit")
    assert one(events, "edit")["text"] == run.did["edit"]["kept"]
    row = features(run, run.did["edit"]["iid"])
    assert row["n_edits"] == 1 and row["edited_text"] == run.did["edit"]["kept"]
    assert 0 < row["edit_ratio"] < 1 and row["abandoned_explicit"] is False


def test_dwell_counts_only_the_time_on_screen_in_the_foreground_and_a_tab_switch_abandons(run: Run) -> None:
    did = run.did["dwell_and_tab_switch"]
    events = of(run, "dwell_and_tab_switch")
    dwell = one(events, "dwell")["dwell_ms"]
    # on screen 1.2 s + 0.3 s (as the page's clock measured them); scrolled away 1 s and hidden 1 s do not count
    assert did["away_ms"] >= 1000
    assert did["seen_ms"] - 150 <= dwell <= did["seen_ms"] + 300, (dwell, did)
    assert one(events, "abandon")["reason"] == "page_hidden"
    row = features(run, did["iid"])
    assert row["dwell_ms"] == dwell and row["abandoned_explicit"] is True and row["copied"] is False


def test_a_page_closed_at_once_still_delivers_its_dwell_and_abandon(run: Run) -> None:
    events = of(run, "close")
    assert one(events, "abandon")["reason"] == "page_closed"
    assert 300 <= one(events, "dwell")["dwell_ms"] < 5000
    row = features(run, run.did["close"]["iid"])
    assert row["abandoned_explicit"] is True and row["dwell_ms"] == one(events, "dwell")["dwell_ms"]


def test_events_made_offline_arrive_once_after_reconnecting(run: Run) -> None:
    did = run.did["offline"]
    assert did["waiting_while_offline"] >= 2  # they were held, not sent
    attempts = [r for r in run.sent if r["scenario"] == "offline" and r["method"] == "POST"]
    assert len(attempts) >= 3  # tried (and failed) while offline, then delivered
    events = of(run, "offline")
    assert one(events, "copy")["chars"] == 12 and one(events, "rating")["thumbs"] == "down"
    row = features(run, did["iid"])
    assert row["copied"] is True and row["explicit_label"] == 0


def test_a_regeneration_is_sent_by_the_server_and_the_page_rates_the_new_answer(run: Run) -> None:
    did = run.did["regenerate"]
    events = of(run, "regenerate", also=(did["new_iid"],))
    retry = one(events, "retry")
    assert (retry["interaction_id"], retry["new_interaction_id"]) == (did["iid"], did["new_iid"])
    assert one(events, "rating")["interaction_id"] == did["new_iid"]
    first, second = features(run, did["iid"]), features(run, did["new_iid"])
    assert first["n_retries"] == 1 and first["dwell_ms"] > 0
    assert second["explicit_label"] == 1 and second["n_retries"] == 0


def test_only_the_events_fields_leave_the_page_no_cookie_no_address(run: Run) -> None:
    posts = [r for r in run.sent if r["method"] == "POST"]
    # (the requests of a page being closed are no longer reported to Playwright)
    assert {r["scenario"] for r in posts} >= set(EXPECTED) - {"close"}
    for request in posts:
        if request["headers"] is None:  # failed (offline): nothing was sent
            continue
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert "cookie" not in headers and not headers.get("referer"), headers
        for event in json.loads(request["body"]):
            assert set(event) - ENVELOPE - {"interaction_token"} <= FIELDS[event["type"]], event
            assert event["interaction_token"]
    bodies = " ".join(r["body"] for r in posts)
    assert "page-secret" not in bodies and "reset my password" not in bodies.lower()  # the page's other text
