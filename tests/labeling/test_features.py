from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.labeling.features import BAD, GOOD, interaction_features
from flywheel_feedback.services.lake.events import events_frame

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def served(
    iid: str, output: str = "the answer is to open settings", prompt: str = "how do I reset it?", at: float = 0
) -> dict[str, Any]:
    return {
        "event_id": f"{iid}-served",
        "type": "interaction",
        "ts": iso(at),
        "interaction_id": iid,
        "session_id": "s",
        "user_id": "u",
        "app": "a",
        "task": "t",
        "model": {"id": "m", "version": "1"},
        "input": {"prompt": prompt},
        "output": output,
        "metadata": {"segment": "pro"},
    }


def fb(iid: str, kind: str, at: float, n: int = 0, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{iid}-{kind}-{n}", "type": kind, "ts": iso(at), "interaction_id": iid, **fields}


def frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    lines = [json.dumps(e).encode() for e in events]
    return events_frame(lines, topic="t", partition=0, offsets=list(range(len(lines))))


def features(events: list[dict[str, Any]], **options: Any) -> dict[str, dict[str, Any]]:
    out = interaction_features(frame(events), **options)
    return {row["interaction_id"]: row for row in out.iter_rows(named=True)}


def test_one_row_per_interaction_with_what_was_served() -> None:
    rows = features([served("a"), served("b", prompt="other")])
    assert set(rows) == {"a", "b"}
    assert rows["a"]["input_text"] == "how do I reset it?"
    assert rows["a"]["segment"] == "pro" and rows["a"]["model_version"] == "1"


def test_a_chat_input_is_kept_whole_and_its_last_user_message_is_the_text() -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "my invoice is wrong"},
            {"role": "assistant", "content": "which plan?"}, {"role": "user", "content": "the Pro plan"},
            {"role": "tool", "content": '{"plan": "Pro"}'}]
    event = served("c") | {"input": {"messages": chat}}
    rows = features([event, served("p"), fb("c", "followup", 30, prompt="the pro plan please")])
    assert rows["c"]["input_text"] == "the Pro plan"  # what rephrase similarity compares
    assert json.loads(rows["c"]["input_messages"]) == chat
    assert rows["p"]["input_messages"] is None
    assert rows["c"]["rephrase_similarity"] > 0.75  # against "the Pro plan", not the whole conversation


def test_edit_ratio_is_the_normalised_distance_to_the_kept_text() -> None:
    rows = features(
        [
            served("light"),
            fb("light", "edit", 5, text="the answer is to open Settings"),
            served("heavy"),
            fb("heavy", "edit", 5, text="completely different words here"),
            served("none"),
        ]
    )
    assert 0 < rows["light"]["edit_ratio"] < 0.1
    assert rows["heavy"]["edit_ratio"] > 0.5
    assert rows["none"]["edit_ratio"] is None
    assert rows["light"]["edited_text"] == "the answer is to open Settings"


def test_the_latest_edit_wins_whatever_order_it_arrived_in() -> None:
    rows = features([served("a"), fb("a", "edit", 20, 2, text="final"), fb("a", "edit", 10, 1, text="draft")])
    assert rows["a"]["edited_text"] == "final" and rows["a"]["n_edits"] == 2


def test_retries_rating_copy_accept_dwell_correction() -> None:
    rows = features(
        [
            served("a"),
            fb("a", "retry", 7),
            fb("a", "retry", 30, 1),
            fb("a", "rating", 40, thumbs="down"),
            fb("a", "dwell", 41, dwell_ms=1200),
            fb("a", "correction", 50, text="right answer"),
            served("b"),
            fb("b", "copy", 3),
            fb("b", "accept", 4),
            fb("b", "rating", 5, score=5),
        ]
    )
    a, b = rows["a"], rows["b"]
    assert a["n_retries"] == 2 and a["time_to_retry_s"] == pytest.approx(7.0)
    assert a["explicit_label"] == BAD and a["dwell_ms"] == 1200 and a["corrected"]
    assert b["copied"] and b["accepted"] and b["explicit_label"] == GOOD
    assert b["n_retries"] == 0 and b["time_to_retry_s"] is None and b["explicit_label"] == GOOD


def test_a_middling_score_is_no_explicit_label() -> None:
    assert features([served("a"), fb("a", "rating", 5, score=3)])["a"]["explicit_label"] == -1


def test_rephrasing_is_measured_against_the_original_prompt() -> None:
    rows = features(
        [
            served("a", prompt="how do I reset my password"),
            fb("a", "followup", 9, prompt="how can I reset my password?"),
            served("b", prompt="how do I reset my password"),
            fb("b", "followup", 9, prompt="thanks, and what about billing"),
        ]
    )
    assert rows["a"]["rephrase_similarity"] > 0.8
    assert rows["b"]["rephrase_similarity"] < 0.6


def test_abandonment_is_inferred_only_once_the_window_has_passed() -> None:
    events = [
        served("silent", at=0),
        fb("silent", "dwell", 5, dwell_ms=900),  # dwell is not activity
        served("used", at=0),
        fb("used", "copy", 5),
        served("fresh", at=590),
        served("late-edit", at=0),
        fb("late-edit", "edit", 900, text="x"),  # after the window: still silent in it
    ]
    rows = features(events, abandon_window=timedelta(minutes=10), now=T0 + timedelta(minutes=15))
    assert rows["silent"]["abandoned_inferred"] is True
    assert rows["used"]["abandoned_inferred"] is False
    assert rows["fresh"]["abandoned_inferred"] is None
    assert rows["late-edit"]["abandoned_inferred"] is True


def test_late_feedback_joins_on_the_next_pass_and_orphans_are_ignored() -> None:
    first = features([served("a")])
    assert first["a"]["copied"] is False
    later = features([served("a"), fb("a", "copy", 3600), fb("ghost", "copy", 1)])
    assert later["a"]["copied"] is True and "ghost" not in later


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="missing"):
        interaction_features(pl.DataFrame({"event_id": ["x"]}))
