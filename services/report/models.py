"""The report's model section: each changed series over time with its change points, the alarms, and the
scores that cannot be compared (two versions of one slice)."""

from __future__ import annotations

import polars as pl

from flywheel_feedback.labeling.changes import Alarm
from flywheel_feedback.labeling.fingerprints import MEASURE_BY_NAME
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.models.behaviour import lake_interactions, model_alarms
from flywheel_feedback.services.models.lineage import comparability, read_lineage
from flywheel_feedback.services.models.webhook import describe
from flywheel_feedback.services.report.charts import table
from flywheel_feedback.services.report.timeseries import series_chart
from flywheel_feedback.services.settings import ModelSettings

MAX_CHARTS = 8
# shown when nothing changed: what an on-call person looks at first
QUIET_MEASURES = ("good_share", "fence_share", "output_log_chars")


def models_section(store: ObjectStore, settings: ModelSettings | None = None) -> str:
    settings = settings or ModelSettings()
    body = _behaviour(store, settings) + _comparability(store)
    return f"<section id='models'><h2>Models over time</h2>{body}</section>"


def _behaviour(store: ObjectStore, settings: ModelSettings) -> str:
    interactions = lake_interactions(store)
    if interactions is None:
        return "<p class='empty'>no labels yet: run `flywheel label`</p>"
    series, alarms = model_alarms(interactions, settings.detector())
    charts = []
    if alarms:
        shown = sorted(alarms, key=lambda a: a.alarmed_at, reverse=True)[:MAX_CHARTS]
        for alarm in shown:
            charts.append(_chart(series, alarm, [a for a in alarms if _same(a, alarm)]))
        note = (f"<div class='alarm'><b>{len(alarms)} model change(s)</b> detected (false-alarm rate set to "
                f"{settings.false_alarms_per_week:g} per model per week): dashed red line where a change began, "
                "red triangle where it was detected.</div>")
        rows = [[describe(a)] for a in alarms]
        return note + "".join(charts) + table(["alarm"], rows)
    keys = series.select("model_id", "model_version", "app", "task").unique().sort("model_id", "model_version")
    for model_id, version, app, task in keys.rows()[:3]:
        for measure in QUIET_MEASURES:
            part = series.filter((pl.col("model_id") == model_id) & (pl.col("model_version") == version)
                                 & (pl.col("app") == app) & (pl.col("task") == task)
                                 & (pl.col("measure") == measure))
            charts.append(_plot(f"{model_id}@{version} {app}/{task}: {MEASURE_BY_NAME[measure].what}", part, []))
    return "<div class='ok'>No model change detected.</div>" + "".join(charts)


def _same(a: Alarm, b: Alarm) -> bool:
    return a.series == b.series and a.measure == b.measure


def _chart(series: pl.DataFrame, alarm: Alarm, marks: list[Alarm]) -> str:
    part = series.filter(pl.col("measure") == alarm.measure)
    for key, value in alarm.series.items():
        part = part.filter(pl.col(key) == value) if key in series.columns else part
    if "model_version" not in alarm.series:  # a change across versions: the model's windows of every version
        part = part.group_by("window_start").agg(
            ((pl.col("mean") * pl.col("n")).sum() / pl.col("n").sum()).alias("mean"),
            pl.col("ci_low").min(), pl.col("ci_high").max()).sort("window_start")
    s = alarm.series
    version = f"@{s['model_version']}" if "model_version" in s else " (across versions)"
    title = (f"{s.get('model_id')}{version} {s.get('app')}/{s.get('task')}: "
             f"{MEASURE_BY_NAME[alarm.measure].what}, {alarm.direction} {alarm.change:+.3g}")
    return _plot(title, part, marks)


def _plot(title: str, part: pl.DataFrame, marks: list[Alarm]) -> str:
    part = part.sort("window_start")
    return series_chart(title, part["window_start"].to_list(), part["mean"].to_list(), part["ci_low"].to_list(),
                        part["ci_high"].to_list(), changes=[(a.changed_at, a.alarmed_at) for a in marks])


def _comparability(store: ObjectStore) -> str:
    flags = comparability(read_lineage(store))
    if flags.is_empty():
        return "<h3>Scores on eval slices</h3><p class='empty'>no scores recorded (`flywheel models record`)</p>"
    rows = [[r["dataset"], f"v{r['dataset_version']}", f"{r['model_id']}@{r['model_version']}", r["metrics"],
             "yes" if r["comparable"] else "NOT COMPARABLE: scored on v" + ", v".join(map(str, r["slice_versions"]))]
            for r in flags.iter_rows(named=True)]
    bad = flags.filter(~pl.col("comparable")).height
    note = (f"<div class='alarm'>{bad} score(s) come from different versions of one slice: compare only scores "
            "on the same version.</div>" if bad else "")
    return "<h3>Scores on eval slices</h3>" + note + table(
        ["slice", "version", "model", "metrics", "comparable"], rows)
