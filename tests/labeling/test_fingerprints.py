"""Behaviour fingerprints and change detection on frames built here (no servers)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from flywheel_feedback.labeling.changes import DetectorConfig, detect, model_threshold, run_length, threshold_for
from flywheel_feedback.labeling.fingerprints import interaction_features, language, parses_as_json, windowed
from flywheel_feedback.labeling.model_diff import diff_models

START = datetime(2026, 11, 2, tzinfo=UTC)


def traffic(hours: int, per_hour: int, *, seed: int, change_at: int | None = None, fence: float = 0.0,
            version_after: str = "v1") -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for h in range(hours):
        for _ in range(per_hour):
            changed = change_at is not None and h >= change_at
            text = "The reset link is valid for 15 minutes, so open it on the same device." + " ok" * rng.randrange(5)
            if changed and rng.random() < fence:
                text = f"```\n{text}\n```"
            rows.append({"ts": START + timedelta(hours=h, seconds=rng.uniform(0, 3599)), "model_id": "m",
                         "model_version": version_after if changed else "v1", "provider": "p", "app": "a",
                         "task": "t", "output": text, "latency_ms": int(rng.lognormvariate(6.5, 0.4)),
                         "copied": rng.random() < 0.4, "label": int(rng.random() < 0.7)})
    return pl.DataFrame(rows)


def test_output_features() -> None:
    assert parses_as_json('{"a": 1}') and not parses_as_json('```json\n{"a": 1}\n```') and not parses_as_json("hi")
    assert language("Der Link ist nicht mehr gültig, und die Seite lädt nicht") == "de"
    assert language("The link is valid for you") == "en"
    frame = interaction_features(pl.DataFrame({
        "ts": [START] * 3, "model_id": ["m"] * 3, "model_version": ["1"] * 3, "provider": ["p"] * 3,
        "app": ["a"] * 3, "task": ["t"] * 3,
        "output": ['{"x": 1}', "```\nprint(1)\n```", "I'm sorry, but I can't help with that request."],
    }))
    assert frame["is_json"].to_list() == [1.0, 0.0, 0.0]
    assert frame["fenced"].to_list() == [0.0, 1.0, 0.0]
    assert frame["refusal"].to_list() == [0.0, 0.0, 1.0]
    assert frame["apology"].to_list() == [0.0, 0.0, 1.0]


def test_windows_carry_intervals_around_the_mean() -> None:
    series = windowed(interaction_features(traffic(3, 200, seed=1)), timedelta(hours=1))
    copy = series.filter(pl.col("measure") == "copy_rate")
    assert copy.height == 3
    assert (copy["ci_low"] < copy["mean"]).all() and (copy["mean"] < copy["ci_high"]).all()
    assert set(series["measure"]) >= {"output_log_chars", "fence_share", "latency_log_ms", "good_share"}


def test_threshold_follows_the_false_alarm_rate() -> None:
    h = threshold_for(10_000, 1.0)
    assert run_length(h, 1.0) == pytest.approx(10_000, rel=1e-6)
    strict = model_threshold(DetectorConfig(false_alarms_per_week=0.01), 20)
    loose = model_threshold(DetectorConfig(false_alarms_per_week=1.0), 20)
    assert strict > loose > 0


def test_a_silent_fence_change_raises_an_alarm_naming_it() -> None:
    frame = traffic(60, 300, seed=2, change_at=45, fence=0.05)
    alarms = detect(windowed(interaction_features(frame), timedelta(hours=1)), DetectorConfig())
    # the fences also lengthen the outputs: that may alarm too, and nothing else
    assert {(a.measure, a.direction) for a in alarms} <= {("fence_share", "up"), ("output_log_chars", "up")}
    alarm = next(a for a in alarms if a.measure == "fence_share")
    assert alarm.series["model_id"] == "m" and alarm.series["model_version"] == "v1"
    assert START + timedelta(hours=44) <= alarm.changed_at <= START + timedelta(hours=46)
    assert alarm.alarmed_at <= START + timedelta(hours=50)
    assert alarm.ci_low < 0.05 < alarm.ci_high or alarm.ci_low < alarm.change < alarm.ci_high
    assert alarm.confidence > 0.99


def test_no_change_no_alarm() -> None:
    frame = traffic(72, 300, seed=3)
    assert detect(windowed(interaction_features(frame), timedelta(hours=1)), DetectorConfig()) == []


def test_diff_lists_the_changed_measure_first() -> None:
    frame = traffic(20, 200, seed=4, change_at=10, fence=0.2, version_after="v2")
    diff = diff_models(interaction_features(frame), ("m", "v1"), ("m", "v2"))
    first = diff.row(0, named=True)
    assert first["measure"] == "fence_share" and first["significant"]
    assert first["ci_low"] < first["change"] < first["ci_high"]
    assert diff.filter(pl.col("measure") == "copy_rate", pl.col("app") == "all")["significant"].to_list() == [False]
