"""The figures every flywheel process with /metrics has: what it runs (`flywheel_build_info`, a gauge of 1 whose
labels name the versions, Prometheus' info idiom) and whether it is ready (`flywheel_ready`)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge

DISTRIBUTION = "flywheel-feedback"


def flywheel_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        return "unknown"


def build_info(registry: CollectorRegistry) -> Gauge:
    gauge = Gauge("flywheel_build_info", "Always 1; its labels name the flywheel version and the Python running it",
                  ["version", "python"], registry=registry)
    gauge.labels(version=flywheel_version(), python=platform.python_version()).set(1)
    return gauge


def ready_gauge(registry: CollectorRegistry, ready: Callable[[], bool]) -> Gauge:
    """1 while `ready()` (asked at each scrape), else 0: what the process's health route answers."""
    gauge = Gauge("flywheel_ready", "1 while the process's health check passes (/healthz answers 200), else 0",
                  registry=registry)
    gauge.set_function(lambda: 1.0 if ready() else 0.0)
    return gauge
