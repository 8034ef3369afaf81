"""Slice and export rows: masking once per distinct value, the reference output, the slice schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from flywheel_feedback.labeling.conversations import mask_messages
from flywheel_feedback.labeling.pii import find_pii
from flywheel_feedback.labeling.records import SLICE_SCHEMA, mask_distinct, slice_records, with_reference


def test_mask_distinct_masks_every_row_and_keeps_nulls() -> None:
    texts = ["mail jane@example.com now", None, "card 4111 1111 1111 1111", "mail jane@example.com now", "plain"]
    frame = pl.DataFrame({"a": texts, "b": ["x"] * 5})
    out = mask_distinct(frame, ["a"])
    assert out.get_column("a").to_list() == ["mail [EMAIL_1] now", None, "card [CARD_1]", "mail [EMAIL_1] now", "plain"]
    assert out.get_column("b").to_list() == ["x"] * 5
    with pytest.raises(ValueError, match="missing"):
        mask_distinct(frame, ["c"])


def test_the_reference_prefers_annotators_then_corrections_then_edits() -> None:
    frame = pl.DataFrame({
        "output_text": ["bad answer"] * 5,
        "annotator_correction": ["annotator says", None, None, None, "  "],
        "correction_text": ["user says", "user says", None, None, None],
        "edited_text": ["user kept", "user kept", "user kept", "bad  answer ", None],
    })
    out = with_reference(frame)
    assert out.get_column("reference_output").to_list() == ["annotator says", "user says", "user kept", None, None]
    assert out.get_column("reference_source").to_list() == [
        "annotator_correction", "user_correction", "user_edit", None, None,
    ]


def test_slice_records_have_the_slice_schema_and_human_labels_are_certain() -> None:
    rows = pl.DataFrame({
        "interaction_id": ["b", "a"],
        "ts": [datetime(2026, 11, 1, tzinfo=UTC)] * 2,
        "task": ["t", "t"],
        "input_text": ["q1", "q2"],
        "output_text": ["o1", "o2"],
        "label": [1, 0],
        "label_source": ["human", "weak"],
        "confidence": [0.6, 0.91],
        "topic_cluster": [1, 0],
        "stratum": ["t|1", "t|0"],
        "added_in": [1, 2],
        "reference_output": [None, "better"],
        "reference_source": [None, "user_edit"],
        "lf_fingerprint": ["f", "f"],
        "input_messages": ['[{"role":"system","content":"s"},{"role":"user","content":"q1"}]', None],
    })
    out = slice_records(rows, cluster_names=["zero", "one"])
    # the whole input: a chat's messages, a plain prompt as one user message
    assert out.get_column("input_messages").to_list() == [
        [{"role": "user", "content": "q2"}], [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}],
    ]
    assert out.schema == SLICE_SCHEMA
    assert out.get_column("interaction_id").to_list() == ["a", "b"]
    assert out.get_column("topic").to_list() == ["zero", "one"]
    assert out.get_column("label_name").to_list() == ["bad", "good"]
    assert out.get_column("is_weak").to_list() == [True, False]
    assert out.get_column("confidence").to_list() == [0.91, 1.0]
    assert out.get_column("weak_confidence").to_list() == [0.91, 0.6]
    assert all(not find_pii(t) for t in out.get_column("input").to_list())
    with pytest.raises(ValueError, match="missing"):
        slice_records(rows.drop("stratum"), cluster_names=[])


def test_each_message_of_a_conversation_is_masked_on_its_own() -> None:
    chat = json.dumps([{"role": "system", "content": 'say "hi"'},
                       {"role": "user", "content": "password: hunter2\" and mail jane@example.com"}])
    out = mask_messages(pl.Series("m", [chat, None, chat]))
    decoded = json.loads(out[0])
    assert [m["role"] for m in decoded] == ["system", "user"] and decoded[0]["content"] == 'say "hi"'
    assert "jane@example.com" not in decoded[1]["content"] and "[EMAIL_1]" in decoded[1]["content"]
    assert out[1] is None and out[2] == out[0]


def test_a_conversation_numbers_its_placeholders_across_its_turns() -> None:
    """Within one conversation a value keeps its placeholder from turn to turn, and two values never share
    one; another conversation starts again at 1."""
    turns = [{"role": "user", "content": "mail jane@example.com"},
             {"role": "assistant", "content": "noted"},
             {"role": "user", "content": "no, write to bob@example.org, not Jane@example.com"}]
    other = [{"role": "user", "content": "I am bob@example.org"}]
    out = mask_messages(pl.Series("m", [json.dumps(turns), json.dumps(other)]))
    first, second = (json.loads(v) for v in out.to_list())
    assert [m["content"] for m in first] == ["mail [EMAIL_1]", "noted", "no, write to [EMAIL_2], not [EMAIL_1]"]
    assert second[0]["content"] == "I am [EMAIL_1]"
