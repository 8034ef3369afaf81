"""Real clients end to end: the `openai` SDK instrumented by each of the three OpenTelemetry instrumentations, in an
app process of its own, calls a local OpenAI-compatible server; the OpenTelemetry SDK's OTLP/HTTP exporter sends
the spans, with the app's server key in OTEL_EXPORTER_OTLP_HEADERS, to the gateway's `POST /v1/traces` (the real
gateway app under uvicorn), which produces to the real Kafka; capture writes the lake, and the interactions there
have the model, input, output, session and latency the calls had. Feedback about them, posted to the same
gateway's `/v1/events` with the interaction ids the app holds, joins them in a labeler pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from flywheel_feedback.labeling.features import GOOD
from flywheel_feedback.labeling.lf import ABSTAIN
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore

from . import otel_app
from .gateway_helpers import APP_KEY, SERVER_KEY, auth, dumps, feedback, gateway_settings, running_gateway
from .kafka_helpers import capture_settings, capture_until
from .otel_helpers import RESPONSE_MODEL_SUFFIX, FakeOpenAI, answer_to

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP = Path(otel_app.__file__)
DELAY_S = 0.15
# what each instrumentation needs to record message content (the official one records none by default)
CONTENT_ON: dict[str, dict[str, str]] = {
    "openai-v2": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                  "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
    "openinference": {},
    "openllmetry": {},
}


# the app's key as an exporter sends it: Authorization (its space percent-encoded, as the variable's W3C baggage
# format has it) or flywheel's own header; APP_KEY is bound to the app "support-bot", the app the spans are of
KEY_HEADERS = {"authorization": f"Authorization=Bearer%20{APP_KEY}", "x-flywheel-key": f"x-flywheel-key={APP_KEY}"}


def run_app(instrumentation: str, *, openai_url: str, otlp_url: str, session: str, user: str,
            compression: str, key_header: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "sk-test",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
        "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
        "OTEL_EXPORTER_OTLP_HEADERS": KEY_HEADERS[key_header],
        **CONTENT_ON[instrumentation],
    }
    done = subprocess.run([sys.executable, str(APP), instrumentation, session, user], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def send_feedback(url: str, ids: list[str], edited: str) -> None:
    """What the user did, from the product's server: copied and rated the first answer, edited the second."""
    first, second = ids
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    events = [feedback(first, "copy", chars=30), feedback(first, "rating", thumbs="up"),
              feedback(second, "edit", text=edited)]
    answer = httpx.post(f"{url}/v1/events", content=dumps([{**e, "ts": soon} for e in events]),
                        headers=auth(SERVER_KEY))
    assert answer.status_code == 200 and answer.json()["accepted"] == 3, answer.text


@pytest.mark.parametrize(
    ("instrumentation", "compression", "key_header"),
    [("openai-v2", "gzip", "authorization"), ("openinference", "none", "x-flywheel-key"),
     ("openllmetry", "gzip", "authorization")],
)
def test_instrumented_openai_calls_land_as_interactions_and_join_their_feedback(
    instrumentation: str, compression: str, key_header: str, kafka_bootstrap: str, kafka_topic: str, tmp_path: Path,
) -> None:
    started = datetime.now(UTC)
    session, user = f"s-{instrumentation}", f"u-{instrumentation}"
    edited = "Open Settings, then Account, then Reset password."
    with FakeOpenAI(delay_s=DELAY_S) as server, \
            running_gateway(gateway_settings(kafka_bootstrap, kafka_topic)) as url:
        app = run_app(instrumentation, openai_url=server.base_url, otlp_url=url, session=session, user=user,
                      compression=compression, key_header=key_header)
        finished = datetime.now(UTC)
        assert len(app["ids"]) == 2, app
        send_feedback(url, app["ids"], edited)

    store = LocalStore(tmp_path / "lake")
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(tmp_path / "lake"))
    capture_until(settings, store, lambda: read_events(store).height >= 5)
    everything = read_events(store)
    assert everything.height == 5  # the app's two model calls and the three feedback events, nothing else
    frame = everything.filter(pl.col("type") == "interaction").sort("ts")
    assert frame.height == 2  # the app's own span is not an interaction
    assert frame.get_column("interaction_id").to_list() == app["ids"]  # the ids the app holds for feedback

    conversation = app["messages"]
    inputs = [conversation[:2], conversation]
    for row, sent, output in zip(frame.iter_rows(named=True), inputs, app["outputs"], strict=True):
        assert row["type"] == "interaction"
        assert row["model"] == {"id": otel_app.MODEL, "version": otel_app.MODEL + RESPONSE_MODEL_SUFFIX,
                                "provider": "openai"}
        assert row["input"] == {"prompt": None, "messages": sent}
        assert row["output"] == output == answer_to(sent)
        assert (row["session_id"], row["user_id"]) == (session, user)
        assert (row["app"], row["task"]) == ("support-bot", "reply-draft")
        assert started <= row["ts"] <= finished
        assert DELAY_S * 1000 <= row["latency_ms"] < DELAY_S * 1000 + 3000
    latencies = frame.get_column("latency_ms").to_list()
    words = len(answer_to(conversation).split(" "))
    assert latencies[1] >= DELAY_S * 1000 + 10 * words  # the streamed call lasts until its last chunk
    metadata = [json.loads(m) for m in frame.get_column("metadata")]
    assert [m["response_id"] for m in metadata] == [r"chatcmpl-1", "chatcmpl-2"]
    assert metadata[0]["usage"] == {"input_tokens": 20, "output_tokens": 7}
    assert everything.filter(pl.col("kafka_topic") != kafka_topic).is_empty()

    # the labeler joins the feedback to exactly the interactions it names
    label_pass(store, options=LabelerOptions(folds=2, with_cleanlab=False))
    labels = read_labels(store)
    assert labels is not None
    rows = {row["interaction_id"]: row for row in labels.iter_rows(named=True)}
    first, second = app["ids"]
    assert set(rows) == {first, second}
    assert (rows[first]["copied"], rows[first]["explicit_label"], rows[first]["n_edits"]) == (True, GOOD, 0)
    assert (rows[second]["copied"], rows[second]["explicit_label"], rows[second]["n_edits"]) == (False, ABSTAIN, 1)
    assert rows[second]["edited_text"] == edited and rows[second]["edit_ratio"] > 0
    assert rows[first]["n_feedback"] == 2 and rows[second]["n_feedback"] == 1
    assert (rows[first]["session_id"], rows[first]["output_text"]) == (session, app["outputs"][0])
    assert rows[first]["weak_label"] == GOOD  # copied and rated up: the labeling functions read it as good
