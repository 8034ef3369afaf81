"""deploy/grafana/flywheel.json is a Grafana dashboard of the documented metrics.

No JSON Schema of Grafana dashboards is published on PyPI, npm or Debian. So the dashboard is loaded with Grafana's
own models, generated from its dashboard schema (grafana-foundation-sdk), and must come back whole (a field the
schema does not know would be dropped); Grafana's structural rules (ids, 24-column grid, refIds, variables) are
checked here; every query is parsed by Prometheus' promtool (as a recording rule) and names only documented
metrics, counters under rate()/increase() and histograms under histogram_quantile()."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.conftest import REPO
from tests.services.metrics_helpers import promtool, readme_metrics

DASHBOARD = REPO / "deploy" / "grafana" / "flywheel.json"
PANEL_TYPES = {"row", "timeseries", "stat"}
GRID_COLUMNS = 24
_METRIC = re.compile(r"\b(flywheel_[a-z_]+)")
_VARIABLE = re.compile(r"\$\{?(\w+)")
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def lost(original: Any, loaded: Any, path: str = "") -> list[str]:
    """What of `original` is not in `loaded` (fields dropped or changed), as paths."""
    if isinstance(original, dict):
        if not isinstance(loaded, dict):
            return [path]
        return [p for k, v in original.items()
                for p in ([f"{path}.{k}"] if k not in loaded else lost(v, loaded[k], f"{path}.{k}"))]
    if isinstance(original, list):
        if not isinstance(loaded, list) or len(original) != len(loaded):
            return [path]
        return [p for i, (a, b) in enumerate(zip(original, loaded, strict=True)) for p in lost(a, b, f"{path}[{i}]")]
    return [] if original == loaded else [path]


def test_grafanas_dashboard_models_load_it_whole(dashboard: dict[str, Any]) -> None:
    register_default_plugins()  # the panel types' options and the Prometheus query model
    model = Dashboard.from_json(dashboard)
    back = json.loads(json.dumps(model, default=lambda o: o.to_json()))
    assert lost(dashboard, back) == []


def test_grafanas_structural_rules_hold(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert {"from", "to"} <= set(dashboard["time"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        assert p["type"] in PANEL_TYPES, p["type"]
        grid = p["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y"))
        assert 1 <= grid["w"] <= GRID_COLUMNS and grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        x0, y0 = grid["x"], grid["y"]
        mine = {(x, y) for x in range(x0, x0 + grid["w"]) for y in range(y0, y0 + grid["h"])}
        assert not mine & cells, f"panel {p['id']} overlaps another"
        cells |= mine
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dashboard["templating"]["list"])
    for p in panels(dashboard):
        assert p["targets"], f"panel {p['title']} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        used = set(_VARIABLE.findall(json.dumps(p))) - GRAFANA_VARIABLES
        assert used <= variables, f"panel {p['title']} uses undefined variables {used - variables}"


def test_every_query_parses_and_names_documented_metrics_the_way_their_type_needs(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    documented = readme_metrics()
    rules = []
    for i, expr in enumerate(exprs(dashboard)):
        for name in _METRIC.findall(expr):
            family = name.removesuffix("_bucket")
            assert family in documented, f"{name} in {expr!r} is not a documented metric"
            kind = documented[family].type
            if kind == "counter":
                assert re.search(rf"(rate|increase)\({name}\{{", expr), f"counter {name} not under rate(): {expr}"
            if kind == "histogram":
                assert name.endswith("_bucket") and "histogram_quantile(" in expr, expr
        # Grafana's variables as Prometheus would receive them
        promql = expr.replace("$__rate_interval", "5m").replace("$job", ".*")
        rules.append({"record": f"flywheel:dashboard_query_{i}", "expr": promql})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_shows_what_operators_watch(dashboard: dict[str, Any]) -> None:
    queries = "\n".join(exprs(dashboard))
    for needed in ("rate(flywheel_capture_events_total", "flywheel_capture_lag_events", "flywheel_ready",
                   "flywheel_slice_age_seconds", "rate(flywheel_otlp_dropped_spans_total",
                   "rate(flywheel_capture_flush_duration_seconds_bucket",
                   "rate(flywheel_labeler_pass_duration_seconds_bucket",
                   "rate(flywheel_annotation_push_duration_seconds_bucket",
                   "rate(flywheel_slice_renewal_duration_seconds_bucket"):
        assert needed in queries, needed
