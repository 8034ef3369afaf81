"""Helpers for the metrics tests: the README's metric table, what a registry holds, a /metrics scrape read back,
and Prometheus' own checker (promtool, from Debian's prometheus package; deploy/promtool.sh installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable
from typing import NamedTuple

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

README = REPO / "README.md"
_ROW = re.compile(r"^\| `(?P<name>[a-z_:]+)` \| (?P<type>counter|gauge|histogram) \|(?P<labels>[^|]*)\| [^|]+ \|$")


class Listed(NamedTuple):
    type: str
    labels: tuple[str, ...]


def readme_metrics() -> dict[str, Listed]:
    """The README's metric table (between its metrics:start and metrics:end markers): exposed name -> type, labels."""
    text = README.read_text()
    start, end = text.index("<!-- metrics:start -->"), text.index("<!-- metrics:end -->")
    rows: dict[str, Listed] = {}
    for line in text[start:end].splitlines()[3:]:  # the marker, the header and its rule
        match = _ROW.match(line)
        assert match, f"a row of the README's metric table does not read as one: {line!r}"
        labels = tuple(sorted(re.findall(r"`([a-z_]+)`", match["labels"])))
        assert match["name"] not in rows, f"{match['name']} is listed twice"
        rows[match["name"]] = Listed(match["type"], labels)
    return rows


def registered(registry: CollectorRegistry) -> dict[str, Listed]:
    """What `registry` exposes: name (a counter's with `_total`, as scraped) -> type, labels."""
    found: dict[str, Listed] = {}
    # prometheus_client keeps its collectors privately; they are the only place a metric's label names are
    # known before it has a sample
    for collector in registry._collector_to_names:
        assert isinstance(collector, MetricWrapperBase), collector
        name = collector._name + ("_total" if collector._type == "counter" else "")
        found[name] = Listed(str(collector._type), tuple(sorted(collector._labelnames)))
    return found


def scrape(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text: str = answer.read().decode()
    return text


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (sample name, its labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def promtool() -> str:
    """promtool's path; installed by deploy/promtool.sh when missing and root, else the test is skipped."""
    path = shutil.which("promtool")
    if path is None and os.geteuid() == 0:
        subprocess.run([str(REPO / "deploy" / "promtool.sh")], check=True)
        path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is missing and this is not root: install Debian's prometheus package "
                    "(deploy/promtool.sh)")
    return path


def promtool_check(text: str) -> None:
    """`promtool check metrics` (the exposition format and Prometheus' naming lints) passes on a scrape."""
    result = subprocess.run([promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and not problems.strip(), f"promtool check metrics:\n{problems}"


def histogram_count(found: Samples, name: str) -> float:
    return value(found, f"{name}_count")


def has_buckets(found: Samples, name: str, at_least: Iterable[float] = ()) -> bool:
    buckets = {float(dict(labels)["le"]) for n, labels in found if n == f"{name}_bucket"}
    return bool(buckets) and set(at_least) <= buckets
