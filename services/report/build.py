"""The flywheel health report: one self-contained HTML page over any lake (`flywheel report`).

Sections: feedback coverage, signal rates per model version with alarms, label distribution and
labeling-function diagnostics, annotation queues, slices (age and drift), and accuracy against the
simulator's truth when it is given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path

import polars as pl

from flywheel_feedback.labeling.health import (
    RATES,
    accuracy_against_truth,
    feedback_coverage,
    label_distribution,
    signal_rates,
    version_alarms,
)
from flywheel_feedback.services.annotation.gold import read_gold_responses
from flywheel_feedback.services.annotation.outbox import read_items
from flywheel_feedback.services.lake.labels import read_labels, read_lf_summary
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.report.charts import grouped_bars, hbar, table
from flywheel_feedback.services.report.models import models_section

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: .2rem; }
section { margin: 2rem 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
svg.chart text { font-size: 12px; fill: #333; } svg.chart text.title { font-weight: 600; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
.alarm { background: #fdecea; border-left: 4px solid #d62728; padding: .5rem 1rem; }
.ok { background: #edf7ed; border-left: 4px solid #2e7d32; padding: .5rem 1rem; }
.empty { color: #888; font-style: italic; }
"""


# After layout, record how many charts the browser actually drew (non-empty boxes with visible
# bars), so a headless browser's DOM dump tells whether the plots rendered.
LAYOUT_PROBE = """
window.addEventListener('load', () => {
  const charts = [...document.querySelectorAll('svg.chart')];
  const drawn = charts.filter((svg) => {
    const box = svg.getBoundingClientRect();
    const bars = [...svg.querySelectorAll('rect.bar')].filter((r) => r.getBoundingClientRect().height > 0);
    return box.width > 0 && box.height > 0 && bars.length > 0;
  });
  document.body.dataset.charts = String(charts.length);
  document.body.dataset.chartsDrawn = String(drawn.length);
});
"""


def build_report(
    store: ObjectStore, out: Path, *, truth: pl.DataFrame | None = None, alarm_threshold: float = 0.08
) -> Path:
    labels = read_labels(store)
    sections = [
        _coverage(labels),
        _rates(labels, alarm_threshold),
        models_section(store),
        _labels(labels, read_lf_summary(store)),
        _queues(store),
        _slices(store),
    ]
    if truth is not None and labels is not None:
        sections.append(_truth(labels, truth))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>flywheel health</title>"
        f"<style>{STYLE}</style></head><body><h1>flywheel health</h1>"
        f"<p class='sub'>lake {escape(store.url)} · generated {generated}</p>{''.join(sections)}"
        f"<script>{LAYOUT_PROBE}</script></body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _section(section_id: str, title: str, body: str) -> str:
    return f"<section id='{section_id}'><h2>{escape(title)}</h2>{body}</section>"


def _coverage(labels: pl.DataFrame | None) -> str:
    if labels is None:
        return _section("coverage", "Feedback coverage", "<p class='empty'>no labels yet: run `flywheel label`</p>")
    cov = feedback_coverage(labels)
    chart = hbar("Interactions by the feedback they got", cov["feedback"].to_list(), cov["share"].to_list())
    text = (
        f"<p>{labels.height:,} interactions. Explicit ratings are rare; implicit signals are what the "
        "labeling functions read.</p>"
    )
    return _section("coverage", "Feedback coverage", text + chart)


def _rates(labels: pl.DataFrame | None, threshold: float) -> str:
    if labels is None:
        return ""
    rates = signal_rates(labels)
    alarms = version_alarms(rates, threshold=threshold)
    groups = [f"{m} {v}" for m, v in zip(rates["model_id"], rates["model_version"], strict=True)]
    names = [*RATES, "good_share"]
    hot = {(f"{m} {v}", s) for m, v, s in zip(alarms["model_id"], alarms["to_version"], alarms["signal"], strict=True)}
    chart = grouped_bars(
        "Signal rates per model version", groups, {n: rates[n].to_list() for n in names}, highlight=hot
    )
    if alarms.height:
        rows = [
            [
                r["model_id"],
                f"{r['from_version']} → {r['to_version']}",
                r["signal"],
                r["before"],
                r["after"],
                r["change"],
            ]
            for r in alarms.iter_rows(named=True)
        ]
        note = (
            f"<div class='alarm'><b>{alarms.height} alarm(s)</b>: a version's behaviour moved more than "
            f"{threshold:.2f} from its predecessor (outlined in red).</div>"
            + table(["model", "versions", "signal", "before", "after", "change"], rows)
        )
    else:
        note = "<div class='ok'>No model version moved past the alarm threshold.</div>"
    return _section("rates", "Signal rates per model version", chart + note)


def _labels(labels: pl.DataFrame | None, summary: pl.DataFrame | None) -> str:
    if labels is None:
        return ""
    dist = label_distribution(labels)
    chart = hbar(
        "Labels",
        [f"{a} ({b})" for a, b in zip(dist["label"], dist["source"], strict=True)],
        [float(v) for v in dist["interactions"]],
    )
    body = chart
    if summary is not None:
        cols = [
            c
            for c in ("name", "coverage", "overlap", "conflict", "learned_accuracy", "empirical_accuracy")
            if c in summary.columns
        ]
        body += hbar("Labeling-function coverage", summary["name"].to_list(), summary["coverage"].to_list())
        body += table(cols, summary.select(cols).rows())
    version = labels["label_model_version"][0] if "label_model_version" in labels.columns else "?"
    body += f"<p>label model {escape(str(version))}</p>"
    has_fallback = summary is not None and "label_model_fallback" in summary.columns and summary.height > 0
    fallback = summary["label_model_fallback"][0] if summary is not None and has_fallback else None
    if fallback:
        body += (f"<p class='alarm'>the label model's fit was degenerate ({escape(str(fallback))}): weighted majority "
                 "vote labeled the last pass, and more items went to the audit queue</p>")
    return _section("labels", "Labels and labeling functions", body)


def _queues(store: ObjectStore) -> str:
    items = read_items(store)
    if items.is_empty():
        return _section("queues", "Annotation queues", "<p class='empty'>nothing queued yet</p>")
    gold = read_gold_responses(store)
    per_queue = (
        items.group_by("queue")
        .agg(pl.len().alias("queued"), pl.col("sent_at").is_not_null().sum().cast(pl.UInt32).alias("sent"))
        .sort("queue")
        .with_columns((pl.col("queued") - pl.col("sent")).alias("pending"))
    )
    chart = grouped_bars(
        "Queue depth",
        per_queue["queue"].to_list(),
        {"pending": [float(v) for v in per_queue["pending"]], "sent to Argilla": [float(v) for v in per_queue["sent"]]},
    )
    passes = items.filter(pl.col("source").str.starts_with("labeler:")).get_column("source").n_unique()
    answered = gold["interaction_id"].n_unique() if not gold.is_empty() else 0
    text = (
        f"<p>{items.height:,} items queued over {passes} labeler pass(es); {answered:,} answered by "
        "annotators so far.</p>"
    )
    return _section("queues", "Annotation queues", chart + text + table(per_queue.columns, per_queue.rows()))


def _slices(store: ObjectStore) -> str:
    from flywheel_feedback.services.slices.versions import SLICES_PREFIX, list_roots, published

    manifests = [(root, m) for root in list_roots(store, SLICES_PREFIX) for _, m in published(store, root).values()]
    if not manifests:
        return _section("slices", "Eval slices", "<p class='empty'>no slice published yet</p>")
    now = datetime.now(UTC)
    rows = []
    for key, m in manifests:
        created = m.get("created_at")
        age_h = (now - datetime.fromisoformat(created)).total_seconds() / 3600 if created else None
        drift = m.get("drift") or {}
        before = (drift.get("before") or {}).get("divergence")
        after = (drift.get("after") or {}).get("divergence")
        rows.append(
            [
                m.get("name", key.split("/")[1]),
                m.get("version"),
                m.get("rows"),
                age_h,
                before,
                after,
                m.get("reason", ""),
            ]
        )
    names = [f"{r[0]} v{r[1]}" for r in rows]
    age = hbar("Slice age (hours)", names, [float(r[3] or 0.0) for r in rows])
    drift_chart = grouped_bars(
        "Divergence from recent traffic when published (parent before, this version after)",
        names,
        {"parent before": [float(r[4] or 0.0) for r in rows], "this version": [float(r[5] or 0.0) for r in rows]},
    )
    columns = ["slice", "version", "rows", "age h", "parent divergence", "divergence", "why"]
    return _section("slices", "Eval slices: age and drift", age + drift_chart + table(columns, rows))


def _truth(labels: pl.DataFrame, truth: pl.DataFrame) -> str:
    acc = accuracy_against_truth(labels, truth)
    chart = hbar(
        "Label accuracy against the simulator's truth", acc["model_version"].to_list(), acc["accuracy"].to_list()
    )
    return _section("truth", "Label quality (simulated truth)", chart + table(acc.columns, acc.rows()))
