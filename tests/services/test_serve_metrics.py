"""`flywheel serve`'s /metrics as it runs against the real Kafka (lake on local disk, no Argilla): after traffic the
flush, labeler-pass and renewal histograms have samples, the counters grow with more traffic, the slice age is that
of the version's commit in its versions table, build info is there, and promtool accepts the scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel_feedback.client import Emitter
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.slices.versions import latest_published_at, slice_root
from tests.conftest import REPO, free_port

from .metrics_helpers import Samples, histogram_count, names, promtool_check, samples, scrape, value
from .test_serve import SLICE, send, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_serve_metrics_measure_flushes_passes_renewals_and_slice_age(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    lake = tmp_path / "lake"
    definitions = tmp_path / "slices"
    definitions.mkdir()
    (definitions / "serve-eval.toml").write_text(SLICE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_ARGILLA_")},
        "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLYWHEEL_CAPTURE_TOPIC": kafka_topic,
        "FLYWHEEL_CAPTURE_DLQ_TOPIC": f"{kafka_topic}.dlq",
        "FLYWHEEL_CAPTURE_GROUP_ID": f"{kafka_topic}-serve",
        "FLYWHEEL_CAPTURE_FLUSH_INTERVAL_S": "0.5",
        "FLYWHEEL_LAKE_URL": str(lake),
        "FLYWHEEL_LABELER_FOLDS": "3",
        "FLYWHEEL_SLICES_DEFINITIONS_DIR": str(definitions),
        "FLYWHEEL_SLICES_ANNOUNCE_TOPIC": f"{kafka_topic}.slices",
        "FLYWHEEL_SERVE_PORT": str(port),
        "FLYWHEEL_SERVE_LABEL_INTERVAL_S": "2",
        "FLYWHEEL_SERVE_RENEW_INTERVAL_S": "3",
        "FLYWHEEL_SERVE_METRICS_INTERVAL_S": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "flywheel_feedback.services.cli", "serve"], env=env,
                                   cwd=REPO, stdout=out, stderr=out)

    def now() -> Samples:
        return samples(scrape(url))

    def age_sampled() -> bool:
        return ("flywheel_slice_age_seconds", frozenset({("slice", "serve-eval")})) in now()

    try:
        send(kafka_bootstrap, kafka_topic, 600, seed=41)
        wait_for("events captured", lambda: value(now(), "flywheel_capture_events_total") > 1000, 90, log)
        wait_for("a labeler pass", lambda: value(now(), "flywheel_labeler_interactions_total") >= 600, 120, log)
        wait_for("a slice published", age_sampled, 120, log)

        text = scrape(url)
        before = samples(text)
        assert not {n for n in names(before) if n.endswith("_per_second")}
        for histogram in ("flywheel_capture_flush_duration_seconds", "flywheel_labeler_pass_duration_seconds",
                          "flywheel_slice_renewal_duration_seconds"):
            assert histogram_count(before, histogram) >= 1, histogram
            assert value(before, f"{histogram}_bucket", le="+Inf") == histogram_count(before, histogram)
        assert histogram_count(before, "flywheel_annotation_push_duration_seconds") == 0  # no Argilla configured
        assert value(before, "flywheel_slice_versions_published_total", slice="serve-eval") >= 1
        assert value(before, "flywheel_ready") == 1
        assert [k for k in before if k[0] == "flywheel_build_info"]
        promtool_check(text)

        # the age is that of the latest version's commit, read from the lake by the test itself (again when a
        # renewal published a newer version meanwhile)
        for _ in range(5):
            published = latest_published_at(LocalStore(lake), slice_root("serve-eval"))
            start = time.time()
            age = value(now(), "flywheel_slice_age_seconds", slice="serve-eval")
            end = time.time()
            if published == latest_published_at(LocalStore(lake), slice_root("serve-eval")):
                break
        assert published is not None
        assert age >= 0 and start - published - 1 <= age <= end - published + 1

        send(kafka_bootstrap, kafka_topic, 200, seed=42)
        with Emitter(kafka_bootstrap, topic=kafka_topic) as emitter:
            emitter.send_raw(b"{not an event", key=b"bad")

        def grown() -> bool:
            found = now()
            return all(value(found, name) > value(before, name) for name in (
                "flywheel_capture_events_total", "flywheel_labeler_passes_total",
                "flywheel_capture_dead_letters_total"))

        wait_for("the counters grow", grown, 120, log)
        after = now()
        for histogram in ("flywheel_capture_flush_duration_seconds", "flywheel_labeler_pass_duration_seconds"):
            assert histogram_count(after, histogram) > histogram_count(before, histogram)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
