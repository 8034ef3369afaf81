"""The figures `flywheel serve` exposes on /metrics (Prometheus text format), each listed in the README's metric
table (tests/services/test_metrics_readme.py holds the two together).

One registry per process (the gateway's and OTLP's figures join it), so tests can build several services side by
side. Throughput is counted (`*_total`; Prometheus' rate() makes rates of them) and durations are histograms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flywheel_feedback.services.capture.batcher import FlushStats
from flywheel_feedback.services.otlp.metrics import OtlpMetrics
from flywheel_feedback.services.process_metrics import build_info, ready_gauge

# seconds; a flush is one Parquet file and one Delta commit, a pass or a renewal reads the lake
FLUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass
class FlywheelMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = build_info(r)
        self.otlp = OtlpMetrics(r)
        self.captured = Counter("flywheel_capture_events", "Events written to the lake", registry=r)
        self.dead_lettered_events = Counter(
            "flywheel_capture_dead_letters", "Events sent to the dead-letter topic", registry=r
        )
        self.flush_seconds = Histogram(
            "flywheel_capture_flush_duration_seconds",
            "One capture flush: writing its Parquet file and committing it to the raw events table",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.capture_lag = Gauge(
            "flywheel_capture_lag_events", "Events in Kafka not yet committed by capture", registry=r
        )
        self.labeled = Counter("flywheel_labeler_interactions", "Interactions labeled (all passes)", registry=r)
        self.label_passes = Counter("flywheel_labeler_passes", "Labeler passes that changed the labels", registry=r)
        self.label_pass_seconds = Histogram(
            "flywheel_labeler_pass_duration_seconds",
            "One labeler pass, including those that found nothing new and those that failed",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.label_fallback = Gauge(
            "flywheel_label_model_fallback",
            "1 while the last pass labeled with weighted majority vote because the label model's fit was degenerate",
            registry=r,
        )
        self.pushed = Counter(
            "flywheel_annotation_pushed_records", "Records Argilla confirmed, over all pushes", registry=r
        )
        self.push_seconds = Histogram(
            "flywheel_annotation_push_duration_seconds",
            "One push of the outbox to Argilla, including failed ones",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("flywheel_queue_depth", "Outbox items not yet sent to Argilla", ["queue"], registry=r)
        self.gold = Gauge("flywheel_gold_labels", "Human answers landed in the lake", registry=r)
        self.slice_age = Gauge(
            "flywheel_slice_age_seconds",
            "Seconds since the latest version of each slice was published (its commit's timestamp); no sample "
            "before a first version",
            ["slice"],
            registry=r,
        )
        self.slice_drift = Gauge(
            "flywheel_slice_drift", "Divergence of each slice from recent traffic", ["slice"], registry=r
        )
        self.slice_versions = Counter(
            "flywheel_slice_versions_published", "Slice versions published by this process", ["slice"], registry=r
        )
        self.renewal_seconds = Histogram(
            "flywheel_slice_renewal_duration_seconds",
            "One renewal run over every defined slice (drift checks, publishing, announcing), including failed ones",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.errors = Counter("flywheel_errors", "Failures of a component's periodic work", ["component"], registry=r)
        self.dependency_up = Gauge(
            "flywheel_dependency_up", "1 while a dependency (kafka, lake, argilla) answers its probe", ["dependency"],
            registry=r,
        )

    def readiness(self, ready: Callable[[], bool]) -> None:
        """`flywheel_ready` follows `ready()` (the process's health check), asked at each scrape."""
        ready_gauge(self.registry, ready)

    def flushed(self, stats: FlushStats) -> None:
        """Called by capture after each flush (on its writer thread)."""
        self.captured.inc(stats.events)
        self.flush_seconds.observe(stats.seconds)

    def dead_lettered(self, events: int) -> None:
        """Called by capture once events are in the dead-letter topic."""
        self.dead_lettered_events.inc(events)

    def otlp_dropped(self, reasons: Mapping[str, int]) -> None:
        """Called by capture for each OTLP message read from Kafka that had spans dropped."""
        self.otlp.dropped(reasons)

    def slice_published(self, name: str, at: float) -> None:
        """The latest version of slice `name` was published at `at` (Unix seconds); its age is computed at each
        scrape, so it keeps growing while no renewal succeeds. Clocks apart never make it negative."""
        self.slice_age.labels(slice=name).set_function(lambda: max(0.0, time.time() - at))

    def render(self) -> bytes:
        return generate_latest(self.registry)
