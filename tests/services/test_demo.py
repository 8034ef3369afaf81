from __future__ import annotations

from pathlib import Path

from flywheel_feedback.services.demo import landed_frame, run_demo


def test_demo_captures_simulated_traffic_and_reports_rejects(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", interactions=400, echo=False)
    frame = landed_frame(tmp_path / "demo")
    assert result.landed["interaction"] == 400
    assert sum(result.landed.values()) == frame.height
    assert frame.get_column("event_id").is_unique().all()
    assert result.rejected == 4
    assert set(result.reasons) == {
        "invalid JSON",
        "unknown event type 'like'",
        "less_than_equal at rating.score",
        "missing at copy.event_id",
    }
    assert (tmp_path / "demo" / "summary.json").exists()
    assert result.quality["label_model_accuracy"] > 0.7
    assert sum(result.queued.values()) > 0
    assert result.report is not None and "<svg" in result.report.read_text()
