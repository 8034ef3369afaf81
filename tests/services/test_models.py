"""`flywheel models` on a local lake of simulated traffic with a migration and a silent change: alarms, the
migration diff, lineage records and queries with the not-comparable flag, alarm metrics and the webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from flywheel_feedback.labeling.fingerprints import interaction_features
from flywheel_feedback.labeling.model_diff import diff_models
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.cli import app
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.models.behaviour import check_models, lake_interactions
from flywheel_feedback.services.models.lineage import (
    LineageError,
    Ref,
    comparability,
    not_comparable,
    read_lineage,
    record,
)
from flywheel_feedback.services.models.metrics import ModelChangeMetrics
from flywheel_feedback.services.settings import ModelSettings
from flywheel_feedback.services.simulator.changes import ModelChange
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig

from .slices_helpers import write_definition

START = datetime(2026, 11, 2, tzinfo=UTC)
CHANGE_AT = START + timedelta(hours=24)
NEW = "2026-12-01"
SLICE = "models-slice"
# small traffic: short warm-up, so 24 hours before the change are enough
ENV = {"FLYWHEEL_SLICES_ANNOUNCE": "false", "FLYWHEEL_MODELS_WARMUP_WINDOWS": "12"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """support-llm migrates at hour 24 to a version with fences, longer outputs and a lower good share;
    code-llm changes silently (same version) at the same time: a fifth of its outputs fenced. (Bad outputs are
    shorter, so a lower good share shortens the outputs: 30% longer leaves a clear net change in length.)"""
    root = tmp_path_factory.mktemp("models")
    changes = (
        ModelChange("support-llm", CHANGE_AT, new_version=NEW, fence_share=0.05, length_factor=1.3, good_delta=-0.1),
        ModelChange("code-llm", CHANGE_AT, fence_share=0.2),
    )
    config = SimulationConfig(interactions=20_000, hours=48, seed=3, start=START, drift=False, changes=changes)
    simulate_to_file(config, root / "events.jsonl", root / "truth.parquet")
    store = LocalStore(root / "lake")
    capture_file(root / "events.jsonl", store)
    label_pass(store, options=LabelerOptions(folds=3))
    write_definition(root / "slices", SLICE, size=200)
    return root / "lake", root / "slices"


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, list(args), env=ENV)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_the_migration_diff_lists_the_injected_differences_first(lake: tuple[Path, Path]) -> None:
    interactions = lake_interactions(LocalStore(lake[0]))
    assert interactions is not None
    diff = diff_models(interaction_features(interactions), ("support-llm", "2026-09-01"), ("support-llm", NEW))
    totals = diff.filter(pl.col("app") == "all")
    top = totals.head(3).select("measure", "change", "significant").rows()
    assert {m for m, _, _ in top} == {"fence_share", "output_log_chars", "good_share"}, totals
    assert all(significant for _, _, significant in top)
    change = dict(totals.select("measure", "change").rows())
    assert 0.03 < change["fence_share"] < 0.08
    assert 0.05 < change["output_log_chars"] < 0.3  # log(1.3) = 0.26, less the extra bad outputs' shortness
    assert change["good_share"] < -0.04  # the weak label sees most of the 10 points
    assert not totals.filter(pl.col("measure") == "latency_log_ms")["significant"].item()
    out = run("models", "diff", "support-llm@2026-09-01", f"support-llm@{NEW}", "--lake", str(lake[0]))
    lines = [line for line in out.splitlines() if "│" in line and "all" in line]
    assert "fence_share" in lines[0] or "output_log_chars" in lines[0], out


def test_alarms_name_the_silent_change_and_the_migration(lake: tuple[Path, Path]) -> None:
    out = run("models", "alarms", "--lake", str(lake[0]))
    silent = [line for line in out.splitlines() if line.startswith("code-llm@") and "fence_share went up" in line]
    assert silent, out
    assert "support-llm (across versions)" in out, out
    assert "writing" not in out and "write-llm" not in out, out  # no change there, no alarm


def test_alarm_metrics_and_webhook(lake: tuple[Path, Path]) -> None:
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook?token=s3cret"
        settings = ModelSettings(warmup_windows=12, webhook_url=url, lookback_days=30)
        metrics = ModelChangeMetrics()
        new = check_models(LocalStore(lake[0]), settings, metrics)
        assert new and len(received) == 1
        assert {a["measure"] for a in received[0]["alarms"] if a["model_id"] == "code-llm"} >= {"fence_share"}
        assert "code-llm" in received[0]["text"]
        text = generate_latest(metrics.registry).decode()
        assert 'flywheel_model_change_alarm{app="code-assistant"' in text
        assert "flywheel_model_change_checks_total 1.0" in text
        # a second pass over the same lake: the alarms stand, nothing new is posted
        assert check_models(LocalStore(lake[0]), settings, metrics) == []
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def published(lake: tuple[Path, Path]) -> Iterator[Path]:
    path, definitions = lake
    common = ["--lake", str(path)]
    run("slices", "renew", SLICE, *common, "--definitions", str(definitions))
    run("slices", "renew", SLICE, *common, "--definitions", str(definitions), "--force")
    run("export", "sft", *common, "--task", "reply-draft", "--min-confidence", "0.5")
    yield path


def test_lineage_records_queries_and_the_not_comparable_flag(published: Path, tmp_path: Path) -> None:
    common = ["--lake", str(published)]
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"accuracy": 0.81, "f1": 0.77}))
    out = run("models", "record", "--model", "support-llm@2026-09-01", "--trained-on", "sft@1",
              "--evaluated-on", f"{SLICE}@1", "--metrics", str(scores), *common)
    assert "trained_on exports/sft v1" in out and f"evaluated_on slices/{SLICE} v1" in out
    run("models", "record", "--model", f"support-llm@{NEW}", "--evaluated-on", f"{SLICE}@2", "--metrics",
        str(scores), *common)
    shown = run("models", "lineage", "--model", "support-llm@2026-09-01", *common)
    assert "exports/sft" in shown and f"slices/{SLICE}" in shown and "accuracy" in shown
    assert f"NOT COMPARABLE: support-llm@{NEW} was scored on slices/{SLICE} v2" in shown
    diffed = run("models", "diff", "support-llm@2026-09-01", f"support-llm@{NEW}", *common)
    assert f"NOT COMPARABLE: slices/{SLICE}: support-llm@2026-09-01 scored on v[1], support-llm@{NEW} on v[2]" in diffed

    store = LocalStore(published)
    lineage = read_lineage(store)
    assert lineage.height == 3
    flags = comparability(lineage)
    assert flags["comparable"].to_list() == [False, False]
    assert not_comparable(flags, Ref("support-llm", "2026-09-01"), Ref("support-llm", NEW))
    # the same slice version for both: comparable
    record(store, Ref("support-llm", NEW), evaluated_on=Ref(SLICE, "1"), metrics={"accuracy": 0.7})
    record(store, Ref("code-llm", "v3.1"), evaluated_on=Ref(SLICE, "1"), metrics={"accuracy": 0.6})
    assert not not_comparable(comparability(read_lineage(store)), Ref("support-llm", "2026-09-01"),
                              Ref("code-llm", "v3.1"))

    exported = pl.read_parquet(next((published / "exports" / "sft").rglob("*.parquet")))
    iid = exported["interaction_id"][0]
    used = run("models", "lineage", "--interaction", iid, *common)
    assert "exports/sft" in used and "support-llm" in used and "trained_on" in used


def test_the_report_plots_the_changed_series_and_flags_scores(published: Path, tmp_path: Path) -> None:
    store = LocalStore(published)
    record(store, Ref("write-llm", "w-7"), evaluated_on=Ref(SLICE, "2"), metrics={"accuracy": 0.5})
    record(store, Ref("write-llm", "w-6"), evaluated_on=Ref(SLICE, "1"), metrics={"accuracy": 0.4})
    out = run("report", "--lake", str(published), "--out", str(tmp_path / "report.html"))
    assert "report.html" in out
    page = (tmp_path / "report.html").read_text()
    section = page.split("<section id='models'>")[1].split("</section>")[0]
    assert "model change(s)</b> detected" in section
    assert section.count('class="change"') >= 2 and section.count('class="detected"') >= 2
    assert "code-llm@v3.1 code-assistant/explain-code: outputs with markdown code fences, up" in section
    assert "NOT COMPARABLE: scored on v1, v2" in section


def test_lineage_mistakes_are_one_line_errors(published: Path) -> None:
    common = ["--lake", str(published)]
    assert "no version 9" in run("models", "record", "--model", "m@1", "--trained-on", "sft@9", *common, ok=False)
    assert "NAME@VERSION" in run("models", "record", "--model", "m", "--trained-on", "sft@1", *common, ok=False)
    assert "no export kind" in run("models", "record", "--model", "m@1", "--trained-on", "xyz@1", *common, ok=False)
    with pytest.raises(LineageError):
        record(LocalStore(published), Ref("m", "1"))


def test_the_periodic_check_reads_only_its_look_back_window(tmp_path: Path) -> None:
    """The model stage costs what its window holds: with the files of every older date gone from disk (a read of
    those partitions would fail), a check over the last two days still runs, and sees exactly those days."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    config = SimulationConfig(interactions=3000, hours=24 * 8, seed=5, start=start, drift=False)
    simulate_to_file(config, tmp_path / "events.jsonl", tmp_path / "truth.parquet")
    store = LocalStore(tmp_path / "lake")
    capture_file(tmp_path / "events.jsonl", store)
    label_pass(store, options=LabelerOptions(folds=3))
    everything = lake_interactions(store)
    assert everything is not None
    newest = everything["ts"].max()
    assert isinstance(newest, datetime)
    keep_from = (newest - timedelta(days=2 + 1)).date()  # the window's days and the margin of a day
    removed = 0
    for table in ("raw/events", "labels/interactions"):
        for folder in (tmp_path / "lake" / table).glob("date=*"):
            if date.fromisoformat(folder.name.removeprefix("date=")) < keep_from:
                for data in folder.glob("*.parquet"):
                    data.unlink()
                    removed += 1
    assert removed > 0
    with pytest.raises(OSError):  # the whole history is no longer readable ...
        lake_interactions(store)
    recent = lake_interactions(store, days=2)  # ... the window is
    assert recent is not None
    expected = everything.filter(pl.col("ts") > newest - timedelta(days=2))
    assert sorted(recent["interaction_id"]) == sorted(expected["interaction_id"])
    assert recent["latency_ms"].null_count() == expected["latency_ms"].null_count()  # the raw side joined too
    check_models(store, ModelSettings(lookback_days=2), ModelChangeMetrics())
