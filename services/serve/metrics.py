"""The figures `flywheel serve` exposes on /metrics (Prometheus text format).

One registry per process, so tests can build several services side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


@dataclass
class FlywheelMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.captured = Counter("flywheel_capture_events", "Events written to the lake", registry=r)
        self.dead_lettered = Counter(
            "flywheel_capture_dead_letters", "Events sent to the dead-letter topic", registry=r
        )
        self.capture_rate = Gauge(
            "flywheel_capture_events_per_second", "Events per second over the last flush", registry=r
        )
        self.capture_lag = Gauge(
            "flywheel_capture_lag_events", "Events in Kafka not yet committed by capture", registry=r
        )
        self.labeled = Counter("flywheel_labeler_interactions", "Interactions labeled (all passes)", registry=r)
        self.label_rate = Gauge(
            "flywheel_labeler_interactions_per_second", "Labels per second in the last pass", registry=r
        )
        self.label_passes = Counter("flywheel_labeler_passes", "Labeler passes that changed the labels", registry=r)
        self.label_fallback = Gauge(
            "flywheel_label_model_fallback",
            "1 while the last pass labeled with weighted majority vote because the label model's fit was degenerate",
            registry=r,
        )
        self.queue_depth = Gauge("flywheel_queue_depth", "Outbox items not yet sent to Argilla", ["queue"], registry=r)
        self.gold = Gauge("flywheel_gold_labels", "Human answers landed in the lake", registry=r)
        self.slice_age = Gauge(
            "flywheel_slice_age_seconds", "Age of the newest version of each slice", ["slice"], registry=r
        )
        self.slice_drift = Gauge(
            "flywheel_slice_drift", "Divergence of each slice from recent traffic", ["slice"], registry=r
        )
        self.errors = Counter("flywheel_errors", "Failures of a component's periodic work", ["component"], registry=r)
        self.dependency_up = Gauge(
            "flywheel_dependency_up", "1 while a dependency (kafka, lake, argilla) answers its probe", ["dependency"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
