"""The health report, opened in headless Chromium (Debian's), with its plots drawn."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flywheel_feedback.services.demo import run_demo

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run deploy/chromium.sh (the README's test command does)")
    return path


@pytest.mark.slow
def test_the_demo_report_renders_its_plots_in_a_browser(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", interactions=1500, echo=False)
    assert result.report is not None
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            result.report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    charts = re.search(r'data-charts="(\d+)"', dom)
    drawn = re.search(r'data-charts-drawn="(\d+)"', dom)
    assert charts and drawn, "the layout probe did not run"
    assert int(charts.group(1)) >= 6
    assert drawn.group(1) == charts.group(1), f"only {drawn.group(1)} of {charts.group(1)} charts were drawn"
    for section in ("coverage", "rates", "labels", "queues", "slices", "truth"):
        assert f'id="{section}"' in dom or f"id='{section}'" in dom

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1100,2400",
            f"--screenshot={shot}",
            result.report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
