"""Model change alarms as Prometheus metrics, in the registry the caller gives (serve's, by default its own).

`flywheel_model_change_alarm` is 1 for each (model, version, provider, app, task, measure, direction) with an
alarm raised in the look-back window, and its change, confidence and detection time beside it;
`deploy/prometheus/flywheel-rules.yml` routes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from flywheel_feedback.labeling.changes import Alarm

LABELS = ("model_id", "model_version", "provider", "app", "task", "measure", "direction")


@dataclass
class ModelChangeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.alarm = Gauge("flywheel_model_change_alarm", "1 while a model's behaviour measure has changed",
                           LABELS, registry=r)
        self.change = Gauge("flywheel_model_change_size", "Size of the change (after - before, in the measure's "
                            "unit: a share, or log chars/ms)", LABELS, registry=r)
        self.confidence = Gauge("flywheel_model_change_confidence", "Confidence that the change is real (1 - p)",
                                LABELS, registry=r)
        self.changed_at = Gauge("flywheel_model_change_changed_at_seconds", "Estimated event time of the change "
                                "(Unix seconds)", LABELS, registry=r)
        self.raised = Counter("flywheel_model_change_alarms", "Model change alarms raised", ["model_id"], registry=r)
        self.checks = Counter("flywheel_model_change_checks", "Passes of the model change detector", registry=r)
        self._shown: set[tuple[str, ...]] = set()

    def show(self, alarms: list[Alarm]) -> list[Alarm]:
        """Expose the alarms of this pass (and drop the ones gone from it); returns those new since the last."""
        self.checks.inc()
        now: dict[tuple[str, ...], Alarm] = {}
        for a in alarms:
            now[(*(str(a.series.get(k) or "") for k in LABELS[:5]), a.measure, a.direction)] = a
        new = [a for key, a in now.items() if key not in self._shown]
        for key in self._shown - now.keys():
            for gauge in (self.alarm, self.change, self.confidence, self.changed_at):
                gauge.remove(*key)
        for key, a in now.items():
            self.alarm.labels(*key).set(1)
            self.change.labels(*key).set(a.change)
            self.confidence.labels(*key).set(a.confidence)
            self.changed_at.labels(*key).set(a.changed_at.timestamp())
        for a in new:
            self.raised.labels(model_id=str(a.series.get("model_id"))).inc()
        self._shown = set(now)
        return new
