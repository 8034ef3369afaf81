"""What OTLP traces brought in and what was left out, on /metrics: over HTTP (`POST /v1/traces`) and from a
Kafka topic of OTLP exports read by capture. One instance per registry (serve shares it between both)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter

from flywheel_feedback.services.otlp.convert import DROP_CODES
from flywheel_feedback.services.otlp.decode import MalformedOtlpError, TooLargeError, UnsupportedMediaTypeError

# the reasons a whole request is refused: its error class's code, or Kafka not taking its events (503)
KAFKA_UNAVAILABLE = "kafka_unavailable"
REJECT_CODES = (MalformedOtlpError.code, TooLargeError.code, UnsupportedMediaTypeError.code, KAFKA_UNAVAILABLE)
OTHER = "other"  # a drop reason without a short name (none today; kept so a new reason still counts)


class OtlpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.interactions = Counter(
            "flywheel_otlp_interactions", "Interaction events made from OTLP spans (LLM calls)", registry=r
        )
        self.dropped_spans = Counter(
            "flywheel_otlp_dropped_spans",
            "OTLP spans that made no interaction, by reason (not_llm, failed, no_content, no_model)",
            ["reason"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "flywheel_otlp_rejected_requests",
            "OTLP/HTTP requests refused whole, by reason (malformed, too_large, unsupported_media_type, "
            "kafka_unavailable)",
            ["reason"],
            registry=r,
        )
        # every series exists from the start, so rate() sees the first increase
        for code in DROP_CODES.values():
            self.dropped_spans.labels(reason=code)
        for code in REJECT_CODES:
            self.rejected_requests.labels(reason=code)

    def dropped(self, reasons: Mapping[str, int]) -> None:
        """Count a request's dropped spans (`Converted.dropped`: reason text -> spans)."""
        for reason, spans in reasons.items():
            self.dropped_spans.labels(reason=DROP_CODES.get(reason, OTHER)).inc(spans)
