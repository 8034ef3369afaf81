"""Conversations in, conversations out: simulated chat traffic through capture, labels, an eval slice and the
three exports, checked the way training code reads them (Hugging Face `datasets`, TRL's data utilities where
TRL imports, OpenAI's chat fine-tuning rules), and the labels table's `source` coding."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.labeling.exports import COLUMNS, Kind
from flywheel_feedback.labeling.pii import find_pii
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import LABELS
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig
from flywheel_feedback.services.slices import load_export, load_export_dataset, load_slice
from flywheel_feedback.services.slices.api import pull
from flywheel_feedback.services.slices.build import renew
from flywheel_feedback.services.slices.definitions import load_definition
from flywheel_feedback.services.slices.exports import JSONL, export
from flywheel_feedback.services.slices.versions import DATA, MANIFEST, export_root, publish, sha256
from tests.chat_formats import conversational, openai_chat_problems
from tests.services.slices_helpers import capture_and_label, write_definition
from tests.trl_side import run_check

KINDS: tuple[Kind, ...] = ("sft", "preference", "classifier")


@dataclass(frozen=True)
class ChatLake:
    store: LocalStore
    pulled: dict[Kind, Path]  # kind -> the pulled version's folder
    sent: dict[str, list[dict[str, str]]]  # interaction_id -> the chat input as sent (unmasked)


@pytest.fixture(scope="module")
def chat_lake(tmp_path_factory: pytest.TempPathFactory) -> ChatLake:
    root = tmp_path_factory.mktemp("conversations")
    events, truth_path = root / "events.jsonl", root / "truth.parquet"
    simulate_to_file(SimulationConfig(interactions=2500, seed=3, chat_share=0.4, drift=False), events, truth_path)
    store = LocalStore(root / "lake")
    capture_and_label(store, events, pl.read_parquet(truth_path), gold_share=0.05, seed=1, tag="chat")
    definition = write_definition(root / "slices", "support-chat", size=300, tasks=["chat"])
    assert renew(store, load_definition(definition)).published
    pulled = {}
    for kind in KINDS:
        assert export(store, kind, exclude_slices=False).rows > 0, kind
        pulled[kind] = next(p.parent for p in pull(store, export_root(kind), None, root / "pulled")
                            if p.name == JSONL)
    raw = read_events(store, types=["interaction"], columns=["type", "interaction_id", "input"])
    sent = {iid: value["messages"] for iid, value in raw.select("interaction_id", "input").iter_rows()
            if value["messages"]}
    return ChatLake(store, pulled, sent)


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / JSONL).read_text().splitlines()]


def chat_rows(frame: pl.DataFrame, sent: dict[str, list[dict[str, str]]]) -> pl.DataFrame:
    return frame.filter(pl.col("interaction_id").is_in(list(sent)))


def test_every_file_of_a_version_has_the_same_columns_and_the_manifest_hashes_each(chat_lake: ChatLake) -> None:
    for kind, folder in chat_lake.pulled.items():
        parquet = pl.read_parquet(folder / DATA)
        assert parquet.columns == list(COLUMNS[kind])
        assert all(list(line) == parquet.columns for line in lines(folder)), kind
        assert len(lines(folder)) == parquet.height
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["files"][DATA]["sha256"] == sha256((folder / DATA).read_bytes())
        assert manifest["derived_files"][JSONL]["sha256"] == sha256((folder / JSONL).read_bytes())


def test_every_row_loads_with_datasets_and_chat_rows_are_conversations(chat_lake: ChatLake) -> None:
    for kind in KINDS:
        frame = load_export(kind, lake=chat_lake.store)
        dataset = load_export_dataset(kind, lake=chat_lake.store)
        assert dataset.num_rows == frame.height > 0 and dataset.column_names == frame.columns
        rows = list(dataset)
        assert len(rows) == frame.height
        if kind == "classifier":
            assert {"text", "label", "confidence", "source"} <= set(dataset.column_names)
            assert set(frame.get_column("source")) <= {"human", "weak"}
            continue
        assert all(conversational(row) for row in rows), kind
    from_jsonl = load_export_dataset("sft", lake=chat_lake.store)
    assert from_jsonl.features["messages"] is not None


def test_sft_keeps_the_system_prompt_and_earlier_turns_in_order(chat_lake: ChatLake) -> None:
    sft = chat_rows(load_export("sft", lake=chat_lake.store), chat_lake.sent)
    assert sft.height > 0
    multi_turn = 0
    for row in sft.iter_rows(named=True):
        messages, sent = row["messages"], chat_lake.sent[row["interaction_id"]]
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
        assert [m["role"] for m in messages[:-1]] == [m["role"] for m in sent]
        masked = any(m["content"] != s["content"] and "[" in m["content"]
                     for m, s in zip(messages[:-1], sent, strict=True))
        if not masked:  # the conversation as it was sent, in its order, then the answer to learn
            assert messages[:-1] == sent
        multi_turn += sum(m["role"] == "user" for m in sent) >= 2
    assert multi_turn > 0, "no multi-turn conversation reached the SFT export"


def test_the_sft_export_passes_the_openai_chat_format_check(chat_lake: ChatLake) -> None:
    examples = lines(chat_lake.pulled["sft"])
    problems = {str(e["interaction_id"]): openai_chat_problems(e) for e in examples}
    assert examples and {k: v for k, v in problems.items() if v} == {}
    assert any(m["role"] == "tool" for e in examples for m in e["messages"])


def test_preference_pairs_prompt_with_the_conversation_and_answer_with_one_assistant_turn(chat_lake: ChatLake) -> None:
    pairs = load_export("preference", lake=chat_lake.store)
    chat = chat_rows(pairs, chat_lake.sent)
    assert chat.height > 0
    for row in chat.iter_rows(named=True):
        assert [m["role"] for m in row["prompt"]] == [m["role"] for m in chat_lake.sent[row["interaction_id"]]]
        assert row["prompt"][0]["role"] == "system"
        for side in ("chosen", "rejected"):
            assert [m["role"] for m in row[side]] == ["assistant"] and row[side][0]["content"].strip()
        assert row["chosen"] != row["rejected"]
    assert {"user_edit", "accepted_regeneration"} & set(chat.get_column("source"))


def test_no_planted_personal_data_reaches_a_conversation_of_a_slice_or_an_export(chat_lake: ChatLake) -> None:
    planted = [iid for iid, messages in chat_lake.sent.items() if any(find_pii(m["content"]) for m in messages)]
    assert planted, "the simulator plants personal data in chat messages too: the test needs some"
    frames = [load_export("sft", lake=chat_lake.store).get_column("messages"),
              load_export("preference", lake=chat_lake.store).get_column("prompt"),
              load_slice("support-chat", lake=chat_lake.store).get_column("input_messages")]
    contents = pl.concat([f.explode().struct.field("content") for f in frames]).unique().to_list()
    assert any("[EMAIL_1]" in c or "[CARD_1]" in c or "[PHONE_1]" in c or "[KEY_1]" in c for c in contents)
    assert [c for c in contents if find_pii(c)] == []


@pytest.mark.slow
def test_trl_reads_the_pulled_exports_as_conversational(chat_lake: ChatLake) -> None:
    """The pulled files as a trainer gets them: loaded by `datasets`, read by TRL's own data utilities
    (installed beside the project, tests/trl_side.py)."""
    script = Path(__file__).resolve().parent.parent / "trl_check.py"
    summary = run_check(script, str(chat_lake.pulled["sft"]), str(chat_lake.pulled["preference"]))
    assert summary["sft_parquet"] == summary["sft_json"] == len(load_export("sft", lake=chat_lake.store))
    pairs = len(load_export("preference", lake=chat_lake.store))
    assert summary["preference_parquet"] == summary["preference_json"] == pairs
    assert summary["unpaired_json"] == 2 * pairs


def test_an_eval_slice_row_of_a_chat_holds_the_whole_conversation(chat_lake: ChatLake) -> None:
    rows = chat_rows(load_slice("support-chat", lake=chat_lake.store), chat_lake.sent)
    assert rows.height > 0
    for row in rows.iter_rows(named=True):
        sent = chat_lake.sent[row["interaction_id"]]
        assert [m["role"] for m in row["input_messages"]] == [m["role"] for m in sent]
        users = [m["content"] for m in row["input_messages"] if m["role"] == "user"]
        assert users[-1] == row["input"]  # the one text: the last user message
    longest = max(rows.iter_rows(named=True), key=lambda r: len(r["input_messages"]))
    assert sum(m["role"] == "user" for m in longest["input_messages"]) >= 2


def test_the_labels_table_says_human_weak_or_none_and_no_label_has_no_confidence(chat_lake: ChatLake) -> None:
    labels = read_labels(chat_lake.store)
    assert labels is not None
    by_source = {s: labels.filter(pl.col("source") == s) for s in ("human", "weak", "none")}
    assert sum(f.height for f in by_source.values()) == labels.height
    assert all(f.height > 0 for f in by_source.values()), {s: f.height for s, f in by_source.items()}
    assert by_source["human"].get_column("gold_label").null_count() == 0
    assert (by_source["human"].get_column("label") == by_source["human"].get_column("gold_label")).all()
    assert by_source["weak"].get_column("label").is_in([0, 1]).all()
    assert by_source["weak"].get_column("confidence").null_count() == 0
    none = by_source["none"]
    assert (none.get_column("label") == -1).all() and none.get_column("confidence").null_count() == none.height
    assert none.get_column("gold_label").null_count() == none.height
    chat = labels.filter(pl.col("input_messages").is_not_null())
    assert chat.height > 0 and chat.get_column("task").unique().to_list() == ["chat"]
    assert all(json.loads(m)[0]["role"] == "system" for m in chat.get_column("input_messages"))


def test_an_older_labels_table_gains_input_messages_on_the_next_merge(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    older = replace(LABELS, schema=pl.Schema({c: t for c, t in LABELS.schema.items() if c != "input_messages"}))
    row = {"interaction_id": "old", "ts": datetime(2026, 11, 1, tzinfo=UTC), "date": date(2026, 11, 1)}
    delta.append(store, older, pl.DataFrame([row]))
    chat = json.dumps([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}])
    delta.merge(store, LABELS, pl.DataFrame([{**row, "interaction_id": "new", "input_messages": chat}]))
    rows = delta.scan(store, LABELS).collect().sort("interaction_id")
    assert dict(rows.select("interaction_id", "input_messages").iter_rows()) == {"new": chat, "old": None}


def test_an_older_export_layout_gains_the_new_columns_and_a_changed_type_is_refused(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    store = LocalStore(tmp_path / "lake")
    old = pl.DataFrame({"interaction_id": ["a"], "prompt": ["q"], "completion": ["a"], "version": [1]})
    for kind in ("sft", "preference"):
        write_deltalake(store.table_uri(f"exports/{kind}"), old.to_arrow(), partition_by=["version"])
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]
    sft = pl.DataFrame({"interaction_id": ["b"], "messages": messages, "source": ["user_edit"], "task": ["t"],
                        "model_version": ["v"], "label_source": ["weak"], "confidence": [0.9]})
    publish(store, export_root("sft"), 2, {DATA: sft}, {"name": "sft"})
    assert load_export("sft", 2, lake=store).get_column("messages").to_list() == messages
    pair = pl.DataFrame({"pair_id": ["p"], "prompt": [messages[0][:1]], "chosen": [messages[0][1:]],
                         "rejected": [[{"role": "assistant", "content": "no"}]], "source": ["user_edit"],
                         "interaction_id": ["b"], "chosen_interaction_id": ["b"], "task": ["t"],
                         "model_version": ["v"]})
    with pytest.raises(ValueError, match=r"exports/preference holds the columns \['prompt'\]"):
        publish(store, export_root("preference"), 2, {DATA: pair}, {"name": "preference"})
