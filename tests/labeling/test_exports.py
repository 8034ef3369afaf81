"""Training records: SFT conversations, preference pairs (chosen always differs from rejected), classifier rows,
each in the one layout its trainers read; chat inputs keep their whole conversation."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl
import pytest

from flywheel_feedback.labeling.exports import COLUMNS, classifier_records, preference_pairs, sft_records
from flywheel_feedback.labeling.records import with_reference
from tests.chat_formats import conversational, openai_chat_problems


def labeled(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    defaults: dict[str, object] = {
        "task": "t", "model_version": "v", "input_text": "question", "output_text": "answer", "label": 1,
        "label_source": "weak", "confidence": 0.95, "covered": True, "accepted": False, "copied": False,
        "edited_text": None, "correction_text": None, "input_messages": None,
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
    messages = dict(out.select("interaction_id", "messages").iter_rows())
    assert messages["edit"] == [{"role": "user", "content": "question"},
                                {"role": "assistant", "content": "what the user kept"}]
    assert out.columns == list(COLUMNS["sft"])


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
    assert pairs.columns == list(COLUMNS["preference"])
    text = pl.element().struct.field("content")
    flat = pairs.select("interaction_id", pl.col("chosen").list.eval(text).list.first(),
                        pl.col("rejected").list.eval(text).list.first(), "source")
    assert flat.rows() == [
        ("a", "good", "bad", "user_edit"),
        ("r1", "second try", "first try", "accepted_regeneration"),
    ]
    assert pairs.get_column("prompt").to_list() == [[{"role": "user", "content": "question"}]] * 2
    assert (flat.get_column("chosen") != flat.get_column("rejected")).all()
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
    assert out.select("interaction_id", "label", "confidence", "label_name", "source").rows() == [
        ("gold", 0, 1.0, "bad", "human"), ("sure", 1, 0.97, "good", "weak"),
    ]
    assert out.get_column("text")[0] == "question\n\nanswer"
    assert out.columns == list(COLUMNS["classifier"])


CHAT = json.dumps([
    {"role": "system", "content": "You are the support assistant."},
    {"role": "user", "content": "My invoice is wrong."},
    {"role": "assistant", "content": "Which plan are you on?"},
    {"role": "user", "content": "question"},
    {"role": "assistant", "content": "Let me look that up."},
    {"role": "tool", "content": '{"plan": "Pro"}'},
])


def test_a_chat_input_keeps_its_whole_conversation_in_every_kind() -> None:
    frame = labeled([
        {"interaction_id": "c", "input_messages": CHAT, "output_text": "bad", "edited_text": "good",
         "accepted": True},
        {"interaction_id": "p", "output_text": "plain", "edited_text": "better"},
    ])
    sft = sft_records(frame, min_confidence=0.8)
    chat = sft.row(0, named=True)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "user", "assistant", "tool",
                                                     "assistant"]
    assert chat["messages"][:-1] == json.loads(CHAT) and chat["messages"][-1]["content"] == "good"
    for row in sft.iter_rows(named=True):
        assert openai_chat_problems(row) == [] and conversational(row)
    pair = preference_pairs(frame, NO_RETRIES).row(0, named=True)
    assert pair["prompt"] == json.loads(CHAT) and conversational(pair)
    assert pair["chosen"] == [{"role": "assistant", "content": "good"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "bad"}]
    text = classifier_records(frame, min_confidence=0.8).get_column("text")[0]
    assert text.startswith("system: You are the support assistant.\nuser: My invoice is wrong.\n")
    assert text.endswith("tool: {\"plan\": \"Pro\"}\nassistant: bad")


def test_a_conversation_with_an_empty_message_is_no_training_example() -> None:
    empty = json.dumps([{"role": "system", "content": " "}, {"role": "user", "content": "question"}])
    frame = labeled([{"interaction_id": "c", "input_messages": empty, "edited_text": "good"}])
    assert sft_records(frame, min_confidence=0.8).is_empty()
    assert preference_pairs(frame, NO_RETRIES).is_empty()


def test_the_chat_format_check_finds_what_fine_tuning_refuses() -> None:
    ok = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                       {"role": "assistant", "content": "a"}]}
    assert openai_chat_problems(ok) == []
    bad = {
        "empty": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}],
        "two users": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}],
        "ends with user": [{"role": "user", "content": "q"}],
        "odd role": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}],
        "stray tool": [{"role": "user", "content": "q"}, {"role": "tool", "content": "t"},
                       {"role": "assistant", "content": "a"}],
        "late system": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                        {"role": "assistant", "content": "a"}],
    }
    for name, messages in bad.items():
        assert openai_chat_problems({"messages": messages}), name


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="missing"):
        sft_records(pl.DataFrame({"interaction_id": ["a"]}), min_confidence=0.8)
