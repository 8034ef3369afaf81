"""The gateway's figures on /metrics (in the registry of the process that serves it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flywheel_feedback.services.gateway.tokens import TOKEN_PROBLEMS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "flywheel_gateway_requests", "Requests to /v1/events, by HTTP status", ["status"], registry=r
        )
        self.events = Counter(
            "flywheel_gateway_events",
            "Events sent to /v1/events, by outcome (accepted, duplicate, rejected, unavailable) and key",
            ["outcome", "key"],
            registry=r,
        )
        self.rejected = Counter(
            "flywheel_gateway_rejections", "Events and requests refused, by reason code", ["code"], registry=r
        )
        self.token_rejections = Counter(
            "flywheel_gateway_token_rejections",
            "Browser feedback refused for its interaction token (missing, malformed, forged, expired, "
            "other_interaction)",
            ["problem"],
            registry=r,
        )
        for problem in TOKEN_PROBLEMS:
            self.token_rejections.labels(problem=problem)
        self.rate_limited = Counter(
            "flywheel_gateway_rate_limited", "Requests refused by a browser key's rate limit", ["key"], registry=r
        )
        self.busy = Counter(
            "flywheel_gateway_busy", "Requests answered 503 because Kafka was slow, down or not acknowledging",
            registry=r,
        )
        self.in_flight_bytes = Gauge(
            "flywheel_gateway_in_flight_bytes", "Request bytes held until Kafka settles them", registry=r
        )
        self.in_flight_requests = Gauge(
            "flywheel_gateway_in_flight_requests", "Requests held until Kafka settles them", registry=r
        )
        self.request_seconds = Histogram(
            "flywheel_gateway_request_duration_seconds",
            "A POST /v1/events from its arrival to its answer (reading, validating, producing, Kafka's ack)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.ack_seconds = Histogram(
            "flywheel_gateway_ack_seconds",
            "From producing a request's events to Kafka's acknowledgement of the last of them",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
