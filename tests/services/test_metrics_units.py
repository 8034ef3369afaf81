"""serve's and the gateway's registries without servers: the README's metric table lists exactly what they expose;
slice ages come from the versions table (after a failed renewal too, none for an unpublished slice); flushes and
OTLP drops are counted; promtool accepts the exposition."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from flywheel_feedback.labeling.records import SLICE_SCHEMA
from flywheel_feedback.services.capture.batcher import FlushStats
from flywheel_feedback.services.gateway.app import gateway_app
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.otlp.convert import FAILED, NOT_LLM
from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings
from flywheel_feedback.services.settings import GatewaySettings, SliceSettings
from flywheel_feedback.services.slices import versions
from flywheel_feedback.services.slices.traffic import NoTrafficError
from tests.conftest import REPO

from .metrics_helpers import histogram_count, names, promtool_check, readme_metrics, registered, samples, value


def serve(tmp_path: Path, definitions: Path | None = None) -> FlywheelServer:
    settings = ServeSettings(port=0, slices=SliceSettings(definitions_dir=definitions or tmp_path / "no-slices"))
    return FlywheelServer(settings, LocalStore(tmp_path / "lake"))


def test_the_readme_lists_exactly_what_serve_and_the_gateway_expose(tmp_path: Path) -> None:
    listed = readme_metrics()
    assert registered(serve(tmp_path).metrics.registry) == listed
    registry = CollectorRegistry()
    gateway_app(GatewaySettings(), registry=registry)
    gateway = registered(registry)
    assert gateway.items() <= listed.items()
    expected = {"flywheel_build_info", "flywheel_ready"} | {
        name for name in listed if name.startswith(("flywheel_gateway_", "flywheel_otlp_"))
    }
    assert set(gateway) == expected


def test_no_rate_is_a_gauge_and_build_info_names_the_versions(tmp_path: Path) -> None:
    found = samples(serve(tmp_path).metrics.render().decode())
    assert not {n for n in names(found) if "per_second" in n}
    ((labels, one),) = [(dict(k[1]), v) for k, v in found.items() if k[0] == "flywheel_build_info"]
    assert one == 1.0 and labels["version"] and labels["python"].count(".") == 2


def test_flushes_dead_letters_and_otlp_drops_are_counted(tmp_path: Path) -> None:
    metrics = serve(tmp_path).metrics
    metrics.flushed(FlushStats(events=120, partitions=2, seconds=0.3))
    metrics.flushed(FlushStats(events=30, partitions=1, seconds=0.02))
    metrics.otlp_dropped({NOT_LLM: 3, FAILED: 1})
    metrics.dead_lettered(2)
    text = metrics.render().decode()
    found = samples(text)
    assert value(found, "flywheel_capture_events_total") == 150
    assert value(found, "flywheel_capture_dead_letters_total") == 2
    assert histogram_count(found, "flywheel_capture_flush_duration_seconds") == 2
    assert value(found, "flywheel_capture_flush_duration_seconds_sum") == pytest.approx(0.32)
    assert value(found, "flywheel_capture_flush_duration_seconds_bucket", le="0.025") == 1
    assert value(found, "flywheel_otlp_dropped_spans_total", reason="not_llm") == 3
    assert value(found, "flywheel_otlp_dropped_spans_total", reason="failed") == 1
    assert value(found, "flywheel_otlp_dropped_spans_total", reason="no_model") == 0  # there before any drop
    promtool_check(text)


def test_slice_age_is_from_the_published_commit_also_after_a_failed_renewal(tmp_path: Path) -> None:
    definitions = tmp_path / "slices"
    definitions.mkdir()
    for name in ("support-reply", "all-products"):
        shutil.copy(REPO / "slices" / f"{name}.toml", definitions)
    server = serve(tmp_path, definitions)
    # a version published earlier (by another run): support-reply has one, all-products none
    versions.publish(server.store, versions.slice_root("support-reply"), 1, {versions.DATA: pl.DataFrame(
        schema=SLICE_SCHEMA)}, {"name": "support-reply"})
    published_at = versions.latest_published_at(server.store, versions.slice_root("support-reply"))
    assert published_at is not None and abs(published_at - time.time()) < 60
    (renewal,) = [s for s in server.stages() if s.name == "slices"]
    with pytest.raises(NoTrafficError):  # this lake has no labels: the renewal fails
        renewal.work()
    time.sleep(0.2)
    text = server.metrics.render().decode()
    found = samples(text)
    before = time.time()
    age = value(found, "flywheel_slice_age_seconds", slice="support-reply")
    assert 0.2 <= age <= before - published_at + 0.1  # from the commit's timestamp, computed at the scrape
    assert not [k for k in found if k[0] == "flywheel_slice_age_seconds" and ("slice", "all-products") in k[1]]
    assert histogram_count(found, "flywheel_slice_renewal_duration_seconds") == 1  # the failed run is timed too
    later = samples(server.metrics.render().decode())
    assert value(later, "flywheel_slice_age_seconds", slice="support-reply") >= age  # it grows between renewals
    promtool_check(text)


def test_a_slice_published_in_the_future_has_age_zero_not_a_negative_one(tmp_path: Path) -> None:
    metrics = serve(tmp_path).metrics
    metrics.slice_published("ahead", time.time() + 30)  # another host's clock ahead of ours
    assert value(samples(metrics.render().decode()), "flywheel_slice_age_seconds", slice="ahead") == 0.0
