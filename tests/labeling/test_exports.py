"""Training records: SFT targets, preference pairs (chosen always differs from rejected), classifier rows,
and the JSON-lines layouts trainers read."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import polars as pl
import pytest

from flywheel_feedback.labeling.exports import classifier_records, jsonl_layout, preference_pairs, sft_records
from flywheel_feedback.labeling.records import with_reference


def labeled(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    defaults: dict[str, object] = {
        "task": "t", "model_version": "v", "input_text": "question", "output_text": "answer", "label": 1,
        "label_source": "weak", "confidence": 0.95, "covered": True, "accepted": False, "copied": False,
        "edited_text": None, "correction_text": None,
    }
    frame = pl.DataFrame([defaults | dict(r) for r in rows], infer_schema_length=None)
    return with_reference(frame)


NO_RETRIES = pl.DataFrame(schema={"interaction_id": pl.String, "new_interaction_id": pl.String})


def test_sft_takes_references_and_used_good_outputs_only() -> None:
    frame = labeled([
        {"interaction_id": "edit", "label": 0, "edited_text": "what the user kept"},
        {"interaction_id": "fix", "label": 0, "correction_text": "the right answer"},
        {"interaction_id": "used", "accepted": True},
        {"interaction_id": "copied-unsure", "copied": True, "confidence": 0.6},
        {"interaction_id": "bad", "label": 0, "accepted": True},
        {"interaction_id": "unused"},
    ])
    out = sft_records(frame, min_confidence=0.8)
    assert dict(out.select("interaction_id", "source").iter_rows()) == {
        "edit": "user_edit", "fix": "user_correction", "used": "accepted_output",
    }
    assert dict(out.select("interaction_id", "completion").iter_rows())["edit"] == "what the user kept"


def test_preference_pairs_never_pair_a_text_with_itself() -> None:
    frame = labeled([
        {"interaction_id": "a", "output_text": "bad", "edited_text": "good"},
        {"interaction_id": "same", "output_text": "x  y", "edited_text": " x y "},  # no real change
        {"interaction_id": "r1", "output_text": "first try"},
        {"interaction_id": "r2", "output_text": "second try", "copied": True},
        {"interaction_id": "r3", "output_text": "again"},
        {"interaction_id": "r4", "output_text": "again", "accepted": True},  # the same text regenerated
        {"interaction_id": "r5", "output_text": "unused regeneration"},
        {"interaction_id": "r6", "output_text": "never used"},
    ])
    retries = pl.DataFrame({"interaction_id": ["r1", "r3", "r5", "missing"],
                            "new_interaction_id": ["r2", "r4", "r6", "r2"]})
    pairs = preference_pairs(frame, retries)
    assert pairs.select("interaction_id", "chosen", "rejected", "source").rows() == [
        ("a", "good", "bad", "user_edit"),
        ("r1", "second try", "first try", "accepted_regeneration"),
    ]
    assert (pairs.get_column("chosen") != pairs.get_column("rejected")).all()
    assert pairs.get_column("pair_id").is_unique().all()
    with pytest.raises(ValueError, match="regenerations"):
        preference_pairs(frame, pl.DataFrame({"x": [1]}))


def test_classifier_rows_are_gold_and_confident_weak_labels() -> None:
    frame = labeled([
        {"interaction_id": "gold", "label_source": "human", "confidence": 0.55, "label": 0},
        {"interaction_id": "sure", "confidence": 0.97},
        {"interaction_id": "unsure", "confidence": 0.7},
        {"interaction_id": "abstain", "label": -1, "covered": False, "confidence": 0.5},
    ])
    out = classifier_records(frame, min_confidence=0.8)
    assert out.select("interaction_id", "label", "confidence", "label_name").rows() == [
        ("gold", 0, 1.0, "bad"), ("sure", 1, 0.97, "good"),
    ]
    assert out.get_column("text")[0] == "question\n\nanswer"


def test_jsonl_layouts() -> None:
    frame = labeled([{"interaction_id": "a", "output_text": "bad", "edited_text": "good", "accepted": True}])

    def lines(kind: str, records: pl.DataFrame) -> list[dict[str, object]]:
        buf = io.BytesIO()
        jsonl_layout(kind, records).write_ndjson(buf)  # type: ignore[arg-type]
        return [json.loads(line) for line in buf.getvalue().splitlines()]

    sft = lines("sft", sft_records(frame, min_confidence=0.8))[0]
    assert sft["messages"] == [{"role": "user", "content": "question"}, {"role": "assistant", "content": "good"}]
    pair = lines("preference", preference_pairs(frame, NO_RETRIES))[0]
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == ("question", "good", "bad")
    row = lines("classifier", classifier_records(frame, min_confidence=0.8))[0]
    assert set(row) == {"id", "text", "label", "confidence", "metadata"}
    with pytest.raises(ValueError, match="kind"):
        jsonl_layout("dpo", frame)  # type: ignore[arg-type]


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="missing"):
        sft_records(pl.DataFrame({"interaction_id": ["a"]}), min_confidence=0.8)
