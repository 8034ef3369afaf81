"""The model change alerting rules: valid for promtool, the same in the Prometheus Operator's manifest, and
about metrics flywheel exposes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flywheel_feedback.services.models.metrics import ModelChangeMetrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "flywheel-rules.yml"
OPERATOR_RULE = REPO / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.geteuid() != 0:
            pytest.skip("promtool is missing and installing Debian's prometheus package needs root "
                        "(run deploy/promtool.sh as root)")
        subprocess.run([str(REPO / "deploy" / "promtool.sh")], check=True)
        found = shutil.which("promtool")
    assert found is not None, "deploy/promtool.sh did not install promtool"
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "max by (model_id (flywheel_model_change_alarm)"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True).returncode != 0


def test_the_operator_rule_holds_the_same_groups() -> None:
    rule = yaml.safe_load(OPERATOR_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_rules_use_metrics_flywheel_exposes() -> None:
    metrics = ModelChangeMetrics()
    metrics.show([])
    exposed = {s.name for family in metrics.registry.collect() for s in family.samples}
    text = RULES.read_text()
    assert "flywheel_model_change_alarm" in exposed or "flywheel_model_change_alarm" in {
        f.name for f in metrics.registry.collect()}
    assert "flywheel_model_change_checks_total" in exposed
    for name in ("flywheel_model_change_alarm", "flywheel_model_change_checks_total"):
        assert name in text
