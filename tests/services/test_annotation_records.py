"""Unit tests of the annotation sync's pure parts and lake tables: records built and masked, the outbox table
(items queued once, sent state set in place), the gold table and the labeler's consensus over several
annotators. Nothing running is needed, except S3 for the tests marked `s3`."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.labeling.pii import find_pii
from flywheel_feedback.services.annotation.gold import (
    GoldResponse,
    from_search_record,
    from_webhook_event,
    gold_version,
    land,
    landed_versions,
    read_gold_responses,
)
from flywheel_feedback.services.annotation.layout import dataset_name, queue_of
from flywheel_feedback.services.annotation.outbox import (
    enqueue,
    mark_sent,
    outbox_version,
    pending_items,
    queued_pairs,
    read_items,
    read_sent,
)
from flywheel_feedback.services.annotation.records import (
    EMPTY_TEXT,
    MAX_MESSAGE_CHARS,
    build_records,
    conversation,
    masked_items,
)
from flywheel_feedback.services.labeler.pipeline import read_gold
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import GOLD, OUTBOX

# Planted in every free-text column; none of these may survive into a record.
PLANTED = {
    "email": "jane.doe+flywheel@example.co.uk",
    "phone": "+1 415 555 0199",
    "card": "4111 1111 1111 1111",
    "openai_key": "sk-live-0042abcdefghijklmnopqrstuv",
    "github_token": "ghp_abcdefghijklmnopqrstuvwxyz0123",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "bearer": "Bearer abc.def-ghi_jkl012345",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
}
SECRETS = [v.removeprefix("Bearer ") for v in PLANTED.values()]


def _pii(n: int) -> str:
    return " ".join(f"{kind}: {value}" for kind, value in list(PLANTED.items())[n % 3 :: 2])


def labels_frame(n: int = 6) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "interaction_id": [f"i-{k}" for k in range(n)],
            "app": ["support-bot"] * n,
            "task": ["reply-draft"] * n,
            "model_id": ["support-llm"] * n,
            "model_version": ["2026-11-15"] * n,
            "segment": ["pro"] * n,
            "input_text": [f"Reset my password please. {_pii(k)}" for k in range(n - 1)] + [None],
            "output_text": [f"Open Settings, then mail {PLANTED['email']} or call {PLANTED['phone']}"] * n,
            "edited_text": [f"Open Settings > Account. My card {PLANTED['card']}" if k % 2 else None for k in range(n)],
            "correction_text": [f"use token {PLANTED['github_token']}" if k == 1 else None for k in range(n)],
            "edit_ratio": [0.4 if k % 2 else None for k in range(n)],
            "n_retries": [k % 3 for k in range(n)],
            "copied": [k % 2 == 0 for k in range(n)],
            "accepted": [False] * n,
            "rephrase_similarity": [0.81 if k == 2 else None for k in range(n)],
            "dwell_ms": [3200.0] * n,
            "abandoned_explicit": [k == 3 for k in range(n)],
            "abandoned_inferred": [k == 4 for k in range(n)],
            "explicit_label": [0 if k == 1 else -1 for k in range(n)],
            "label": [1, 0, 1, -1, 0, 1][:n],
            "weak_label": [1, 0, 1, -1, 0, 1][:n],
            "confidence": [0.62, 0.55, 0.9, 0.5, 0.58, 0.66][:n],
            "prob_good": [0.62, 0.45, 0.9, 0.5, 0.42, 0.66][:n],
            "label_model_version": ["LabelModel-abc"] * n,
            "lf_fingerprint": ["fp"] * n,
        }
    )


def outbox_frame(ids: list[str], queue: str = "uncertain", reason: str | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "interaction_id": ids,
            "queue": [queue] * len(ids),
            "reason": [reason or f"label-model confidence 0.{k}0 < 0.70" for k in range(len(ids))],
            "priority": [1.0 - k / 10 for k in range(len(ids))],
            "snapshot": ["snap"] * len(ids),
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# records


def test_records_carry_fields_and_metadata_and_show_the_weak_label_without_suggesting_it() -> None:
    items = outbox_frame(["i-0", "i-1", "i-3"])
    masked, orphans = masked_items(items, labels_frame())
    records = {r.interaction_id: r for r in build_records(masked)}
    assert orphans.is_empty()
    assert list(records) == ["i-0", "i-1", "i-3"]  # the outbox's order (highest priority first)

    r0, r1, r3 = records["i-0"], records["i-1"], records["i-3"]
    assert set(r0.fields) == {"conversation", "output", "signals"}  # no edit: the optional field is left out
    assert set(r1.fields) == {"conversation", "output", "user_edit", "signals"}
    assert r0.metadata == {
        "task": "reply-draft",
        "model_version": "2026-11-15",
        "queue": "uncertain",
        "reason": "label-model confidence 0.00 < 0.70",
        "priority": 1.0,
        "weak_label": "good",
        "weak_confidence": 0.62,
        "label_model": "LabelModel-abc",
    }
    # shown, not suggested: Argilla's UI would pre-select a suggestion as the answer
    assert not hasattr(r0, "suggestion")
    assert "**Weak label:** good (confidence 0.62)" in r0.fields["signals"]
    assert r1.metadata["weak_label"] == "bad" and "**Weak label:** bad" in r1.fields["signals"]
    # the label model abstained: no weak label to show
    assert not {"weak_label", "weak_confidence", "label_model"} & set(r3.metadata)
    assert "**Weak label:** none" in r3.fields["signals"]
    assert "**The user rated it:** bad" in r1.fields["signals"]
    assert "edited (40% changed)" in r1.fields["signals"] and "1 retry" in r1.fields["signals"]
    assert "abandoned (said so)" in r3.fields["signals"]


def test_planted_pii_never_reaches_a_record() -> None:
    labels = labels_frame()
    reason = f"flagged by {PLANTED['email']} with key {PLANTED['openai_key']}"
    items = outbox_frame(labels.get_column("interaction_id").to_list(), reason=reason)
    masked, _ = masked_items(items, labels)
    records = build_records(masked)
    assert len(records) == labels.height
    blob = json.dumps([asdict(r) for r in records])
    for secret in SECRETS:
        assert secret not in blob, secret
    for record in records:
        for text in [*texts_of(record.fields), *(str(v) for v in record.metadata.values())]:
            assert not find_pii(text), (record.interaction_id, text)
    assert "[EMAIL_1]" in blob and "[CARD_1]" in blob and "[KEY_1]" in blob and "[PHONE_1]" in blob


def test_an_empty_input_gets_a_placeholder_and_items_without_labels_are_set_aside() -> None:
    masked, orphans = masked_items(outbox_frame(["i-5", "unknown"]), labels_frame())
    (record,) = build_records(masked)
    assert record.fields["conversation"] == [{"role": "user", "content": EMPTY_TEXT}]
    assert orphans.get_column("interaction_id").to_list() == ["unknown"]


def texts_of(fields: dict[str, Any]) -> list[str]:
    """Every text of a record's fields: a text field's value, each message of a chat field."""
    return [text for value in fields.values()
            for text in ([value] if isinstance(value, str) else [m["content"] for m in value])]


# A support chat: system prompt, an earlier turn, a tool result, and the user's last message (the input_text).
CHAT = [
    {"role": "system", "content": "You are the support assistant of Acme. Never share account data."},
    {"role": "user", "content": f"Hi, I am locked out. My email is {PLANTED['email']}."},
    {"role": "assistant", "content": "I can help. What happens when you sign in?"},
    {"role": "tool", "content": f"account lookup: card {PLANTED['card']}, phone {PLANTED['phone']}"},
    {"role": "user", "content": f"It says my key {PLANTED['openai_key']} is wrong. How do I reset my password?"},
]


def chat_labels() -> pl.DataFrame:
    """Two chat interactions and a plain prompt, the chat's messages unmasked as if written by anything."""
    labels = labels_frame(4).with_columns(
        pl.Series("input_messages", [json.dumps(CHAT), json.dumps(CHAT[3:]), None, None], dtype=pl.String))
    return labels.with_columns(
        pl.when(pl.col("input_messages").is_not_null()).then(pl.lit(CHAT[-1]["content"]))
        .otherwise(pl.col("input_text")).alias("input_text"))


def test_a_chat_record_holds_the_whole_conversation_in_order_masked() -> None:
    masked, _ = masked_items(outbox_frame(["i-0", "i-1", "i-2"]), chat_labels())
    chat, short, plain = build_records(masked)
    messages = chat.fields["conversation"]
    assert isinstance(messages, list)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[0]["content"] == CHAT[0]["content"]  # nothing to mask: as it was
    assert messages[2]["content"] == CHAT[2]["content"]
    assert messages[1]["content"] == "Hi, I am locked out. My email is [EMAIL_1]."
    assert "[CARD_1]" in messages[3]["content"] and "[PHONE_1]" in messages[3]["content"]
    assert messages[4]["content"].endswith("is wrong. How do I reset my password?")
    assert short.fields["conversation"] == [
        {"role": m["role"], "content": c} for m, c in zip(CHAT[3:], (messages[3]["content"], messages[4]["content"]),
                                                           strict=True)]
    # a plain prompt is one user message
    assert plain.fields["conversation"] == [{"role": "user", "content": masked.item(2, "input_text")}]
    assert "[CARD_1]" in masked.item(2, "input_text")
    blob = json.dumps([asdict(r) for r in (chat, short, plain)])
    for secret in SECRETS:
        assert secret not in blob, secret
    for text in texts_of(chat.fields):
        assert not find_pii(text), text


def test_a_dataset_of_the_older_layout_gets_the_conversation_as_text_in_its_input_field() -> None:
    masked, _ = masked_items(outbox_frame(["i-0", "i-2"]), chat_labels())
    chat, plain = build_records(masked, conversation_field=False)
    assert set(chat.fields) == {"input", "output", "signals"}
    text = chat.fields["input"]
    assert isinstance(text, str)
    paragraphs = text.split("\n\n")
    assert [p.split(":", 1)[0] for p in paragraphs] == ["system", "user", "assistant", "tool", "user"]
    assert paragraphs[1] == "user: Hi, I am locked out. My email is [EMAIL_1]."
    assert not find_pii(text)
    assert plain.fields["input"] == masked.item(1, "input_text")  # a plain prompt: as before


def test_conversation_messages_are_never_empty_nor_longer_than_argilla_takes() -> None:
    long = "x" * (MAX_MESSAGE_CHARS + 5)
    messages = conversation(json.dumps([{"role": "system", "content": ""}, {"role": "user", "content": long}]),
                            long)
    assert messages[0] == {"role": "system", "content": EMPTY_TEXT}
    assert len(messages[1]["content"]) == MAX_MESSAGE_CHARS
    assert messages[1]["content"].endswith(f"[... cut: {MAX_MESSAGE_CHARS + 5} characters in all]")
    assert conversation(None, "  ") == [{"role": "user", "content": EMPTY_TEXT}]


def test_the_layout_takes_the_conversation_field_or_an_older_input_field() -> None:
    from types import SimpleNamespace

    from flywheel_feedback.services.annotation.layout import has_conversation_field, missing_from

    def dataset(*fields: tuple[str, str]) -> Any:
        rest = [SimpleNamespace(name=n, type="text") for n in ("output", "user_edit", "signals")]
        questions = [SimpleNamespace(name=n) for n in ("quality", "corrected_output")]
        metadata = [SimpleNamespace(name=n) for n in ("task", "model_version", "queue", "reason", "priority")]
        return SimpleNamespace(settings=SimpleNamespace(
            fields=[SimpleNamespace(name=n, type=t) for n, t in fields] + rest, questions=questions,
            metadata=metadata))

    current, older, neither = dataset(("conversation", "chat")), dataset(("input", "text")), dataset()
    assert missing_from(current) == missing_from(older) == []
    assert missing_from(neither) == ["conversation"]
    assert has_conversation_field(current) and not has_conversation_field(older)


def test_an_older_labels_table_without_some_columns_still_builds_records() -> None:
    labels = labels_frame().drop("rephrase_similarity", "dwell_ms", "correction_text", "abandoned_inferred")
    masked, _ = masked_items(outbox_frame(["i-0"]), labels)
    (record,) = build_records(masked)
    assert str(record.fields["output"]).startswith("Open Settings")


def test_a_column_null_in_every_row_is_fine_whatever_type_it_was_written_with() -> None:
    labels = labels_frame().with_columns(pl.lit(None).alias("edited_text"), pl.lit(None).alias("confidence"))
    assert labels.schema["edited_text"] == pl.Null
    items = outbox_frame(["i-1"]).with_columns(pl.lit(None).alias("reason"))
    masked, _ = masked_items(items, labels)
    (record,) = build_records(masked)
    assert "user_edit" not in record.fields
    assert record.metadata["weak_label"] == "bad" and "weak_confidence" not in record.metadata


def test_masked_items_says_what_it_expected() -> None:
    with pytest.raises(ValueError, match="expected outbox items with columns"):
        masked_items(pl.DataFrame({"interaction_id": ["x"]}), labels_frame())


def test_dataset_names_map_back_to_queues() -> None:
    assert dataset_name("fw-", "audit") == "fw-audit"
    assert queue_of("fw-", "fw-audit") == "audit"
    assert queue_of("fw-", "fw-unknown") is None
    assert queue_of("fw-", "other-audit") is None


# ---------------------------------------------------------------------------------------------------------------
# outbox


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A lake on local disk, and one on the real S3 server."""
    if request.param == "local":
        return LocalStore(tmp_path / "lake")
    return S3Store(request.getfixturevalue("s3_url"), **request.getfixturevalue("s3_options"))


def table_rows(store: ObjectStore, name: str) -> pl.DataFrame:
    """The table as Delta holds it (no reader's dedupe or filter in between)."""
    from deltalake import DeltaTable

    frame = pl.from_arrow(DeltaTable(store.table_uri(name), storage_options=store.storage_options()).to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_pending_is_unsent_items_and_an_item_is_queued_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert enqueue(store, outbox_frame(["i-0", "i-1", "i-2"]), source="labeler:a") == 3
    # the same item routed again later (with a lower priority) is one item: the first stays
    assert enqueue(store, outbox_frame(["i-2"]).with_columns(pl.lit(0.1).alias("priority")), source="labeler:b") == 0
    assert enqueue(store, outbox_frame(["i-2"], queue="audit"), source="labeler:b") == 1
    pending = pending_items(store)
    assert pending.select("queue", "interaction_id").rows() == [
        ("audit", "i-2"), ("uncertain", "i-0"), ("uncertain", "i-1"), ("uncertain", "i-2")]
    assert pending.filter(pl.col("queue") == "uncertain").get_column("priority").to_list() == [1.0, 0.9, 0.8]
    assert queued_pairs(store, queues=["audit"]).rows() == [("i-2", "audit")]
    assert queued_pairs(store, except_source="labeler:a").rows() == [("i-2", "audit")]

    batch = pending.filter(pl.col("queue") == "uncertain").head(2)
    now = datetime.now(UTC)
    assert mark_sent(store, dataset="fw-uncertain", items=batch, sent_at=now) == 2
    assert read_sent(store).height == 2
    assert pending_items(store).select("queue", "interaction_id").rows() == [("audit", "i-2"), ("uncertain", "i-2")]
    assert pending_items(store, queues=["audit"]).height == 1
    assert pending_items(store, resend=True).height == 4
    # a sent item queued again stays sent
    assert enqueue(store, outbox_frame(["i-0"]), source="renewal:s/v1") == 0
    assert pending_items(store).height == 2


def test_enqueue_twice_inserts_once_and_mark_sent_updates_in_place(lake: ObjectStore) -> None:
    store = lake
    assert outbox_version(store) is None
    assert enqueue(store, outbox_frame([]), source="labeler:x") == 0 and outbox_version(store) is None
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    items = outbox_frame(["i-0", "i-1", "i-1"])  # a repeated item keeps its highest priority
    assert enqueue(store, items, source="labeler:x", queued_at=at) == 2
    first = outbox_version(store)
    assert enqueue(store, items, source="labeler:x") == 0
    assert outbox_version(store) == first  # nothing new: no commit
    rows = table_rows(store, OUTBOX.name).sort("interaction_id")
    assert rows.schema == OUTBOX.schema
    assert rows.select("interaction_id", "priority", "source", "queued_at").rows() == [
        ("i-0", 1.0, "labeler:x", at), ("i-1", 0.9, "labeler:x", at)]
    assert rows.get_column("sent_at").is_null().all() and rows.get_column("dataset").is_null().all()

    sent_at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert mark_sent(store, dataset="fw-uncertain", items=items.head(1), sent_at=sent_at) == 1
    assert outbox_version(store) == (first or 0) + 1  # one commit
    later = sent_at + timedelta(minutes=5)
    assert mark_sent(store, dataset="fw-uncertain", items=items, sent_at=later) == 2  # a resend moves sent_at
    rows = table_rows(store, OUTBOX.name).sort("interaction_id")
    assert rows.height == 2  # updated in place, one row per item
    assert rows.select("interaction_id", "dataset", "sent_at", "queued_at").rows() == [
        ("i-0", "fw-uncertain", later, at), ("i-1", "fw-uncertain", later, at)]
    assert read_items(store).height == 2 and pending_items(store).is_empty()
    assert mark_sent(store, dataset="fw-uncertain", items=outbox_frame(["unknown"]), sent_at=later) == 0


def test_enqueue_says_what_it_expected(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ValueError, match="missing \\['priority'\\]"):
        enqueue(store, outbox_frame(["i-0"]).drop("priority"), source="labeler:x")
    with pytest.raises(ValueError, match="null key"):
        enqueue(store, outbox_frame(["i-0"]).with_columns(pl.lit(None, pl.String).alias("queue")), source="x")
    with pytest.raises(ValueError, match="source"):
        enqueue(store, outbox_frame(["i-0"]), source="")


def test_concurrent_writers_each_get_their_items_in(lake: ObjectStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = lake
    enqueue(store, outbox_frame(["seed"]), source="labeler:x")
    batches = [outbox_frame([f"w{w}-{k}" for k in range(5)] + ["shared"]) for w in range(4)]
    with ThreadPoolExecutor(4) as pool:
        inserted = list(pool.map(lambda b: enqueue(store, b[1], source=f"w{b[0]}"), enumerate(batches)))
        marked = list(pool.map(lambda b: mark_sent(store, dataset="fw", items=b, sent_at=datetime.now(UTC)),
                               [outbox_frame(["seed"])] * 2))
    assert sum(inserted) == 4 * 5 + 1 and marked == [1, 1]
    rows = table_rows(store, OUTBOX.name)
    assert rows.height == 1 + 4 * 5 + 1 and rows.select("interaction_id", "queue").is_unique().all()


# ---------------------------------------------------------------------------------------------------------------
# gold


T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def gold(interaction: str, annotator: str, label: int, *, at: int = 0, rid: str | None = None) -> GoldResponse:
    return GoldResponse(
        interaction_id=interaction,
        queue="audit",
        dataset="fw-audit",
        annotator=annotator,
        annotator_id=f"{annotator}-id",
        label=label,
        correction=None,
        submitted_at=T0 + timedelta(seconds=at),
        response_id=rid or f"{interaction}-{annotator}",
        source="webhook",
    )


def test_landing_the_same_responses_again_adds_nothing(lake: ObjectStore) -> None:
    store = lake
    responses = [gold("a", "ann", 1), gold("b", "ann", 0)]
    assert gold_version(store) is None
    version = land(store, responses)
    assert version is not None and gold_version(store) == version
    assert land(store, list(reversed(responses))) is None  # a retried webhook, a reconcile after it
    assert land(store, [*responses, gold("c", "ann", 1)]) == version + 1  # only the new version is added
    assert land(store, []) is None
    rows = table_rows(store, GOLD.name)
    assert rows.schema == GOLD.schema
    assert sorted(rows.get_column("response_id")) == ["a-ann", "b-ann", "c-ann"]  # one row per response version
    assert landed_versions(store) == {("a-ann", T0), ("b-ann", T0), ("c-ann", T0)}
    assert gold_version(store) == version + 1


def test_readers_keep_each_annotators_latest_answer(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    land(store, [gold("a", "ann", 1)])
    land(store, [gold("a", "ann", 0, at=60)])  # the same response, edited a minute later
    land(store, [gold("a", "ann", 1)])  # an old delivery arriving late changes nothing
    latest = read_gold_responses(store)
    assert latest.select("interaction_id", "annotator", "label").rows() == [("a", "ann", 0)]
    assert read_gold_responses(store, latest=False).height == 2


def test_the_labeler_takes_one_annotators_label_and_cleanlabs_consensus_for_several(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    land(store, [gold("alone", "x", 0)])
    land(store, [gold("three", "x", 1), gold("three", "y", 1), gold("three", "z", 0)])
    land(store, [gold("pair", "x", 0), gold("pair", "y", 0)])
    land(store, [gold("changed", "z", 1), gold("changed", "z", 0, at=30, rid="changed-z-2")])
    result = {row["interaction_id"]: (row["gold_label"], row["annotators"]) for row in read_gold(store).to_dicts()}
    assert result == {"alone": (0, 1), "changed": (0, 1), "pair": (0, 2), "three": (1, 3)}


def test_read_gold_on_an_empty_lake(tmp_path: Path) -> None:
    assert read_gold(LocalStore(tmp_path)).schema == pl.Schema(
        {"interaction_id": pl.String, "gold_label": pl.Int64, "annotators": pl.Int64, "gold_agreement": pl.Float64})


# ---------------------------------------------------------------------------------------------------------------
# Argilla's JSON -> gold rows


def _record(status: str = "submitted", values: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "rec-uuid",
        "external_id": "i-7",
        "metadata": {"queue": "suspect"},
        "dataset": {"name": "fw-suspect"},
        "responses": [
            {
                "id": "resp-1",
                "values": values if values is not None else
                {"quality": {"value": "bad"}, "corrected_output": {"value": "Open Settings > Account"}},
                "status": status,
                "user_id": "user-1",
                "inserted_at": "2026-11-27T09:00:00.000001",
                "updated_at": "2026-11-27T09:05:00.123456",
            }
        ],
    }


def test_a_webhook_event_and_a_search_result_give_the_same_gold_row() -> None:
    record = _record()
    response = record["responses"][0]
    event = {
        "type": "response.created",
        "version": 1,
        "timestamp": "2026-11-27T09:05:00.200000Z",
        "data": {**{k: v for k, v in response.items() if k != "user_id"}, "record": record,
                 "user": {"id": "user-1", "username": "ann"}},
    }
    by_webhook = from_webhook_event(event, prefix="fw-")
    (by_reconcile,) = from_search_record(record, dataset="fw-suspect", usernames={"user-1": "ann"}, prefix="fw-")
    assert by_webhook is not None
    assert by_webhook.source == "webhook" and by_reconcile.source == "reconcile"
    assert asdict(by_webhook) | {"source": "reconcile"} == asdict(by_reconcile)
    assert by_webhook.version == ("resp-1", datetime(2026, 11, 27, 9, 5, 0, 123456, tzinfo=UTC))
    assert (by_webhook.interaction_id, by_webhook.queue, by_webhook.label) == ("i-7", "suspect", 0)
    assert by_webhook.correction == "Open Settings > Account"


def test_only_submitted_answers_on_our_datasets_become_gold() -> None:
    assert from_search_record(_record(status="draft"), dataset="fw-suspect", usernames={}, prefix="fw-") == []
    assert from_search_record(_record(), dataset="someone-elses", usernames={}, prefix="fw-") == []
    assert from_search_record(_record(values={}), dataset="fw-suspect", usernames={}, prefix="fw-") == []
    (unnamed,) = from_search_record(_record(values={"quality": {"value": "good"}}), dataset="fw-suspect",
                                    usernames={}, prefix="fw-")
    assert (unnamed.annotator, unnamed.label, unnamed.correction) == ("user-1", 1, None)
    assert from_webhook_event({"type": "record.completed", "data": {}}, prefix="fw-") is None


def test_an_edit_is_shown_as_a_word_diff_against_the_output() -> None:
    from flywheel_feedback.services.annotation.records import edit_diff

    assert edit_diff("Open Settings and click Reset", "Open Settings > Account and click Reset now") == (
        "Open Settings **> Account** and click Reset **now**")
    assert edit_diff("the old answer", "a new answer") == "~~the old~~ **a new** answer"


def test_one_confidence_reads_the_same_in_the_reason_the_signals_and_the_metadata() -> None:
    from flywheel_feedback.labeling.routing import RoutingConfig, route
    from flywheel_feedback.services.annotation.layout import confidence_text

    for value, text in [(0.699, "0.69"), (0.6, "0.60"), (0.605, "0.60"), (0.29, "0.29"), (1.0, "1.00")]:
        assert confidence_text(value) == text
        reason = route(pl.DataFrame({"interaction_id": ["i"], "confidence": [value], "is_issue": [False],
                                     "label_quality": [0.9]}), config=RoutingConfig(audit_rate=0.0,
                                                                                    confidence_threshold=1.0))
        if value < 1.0:
            assert f"confidence {text} <" in reason.item(0, "reason")


def test_every_queue_has_its_own_guidelines() -> None:
    from flywheel_feedback.services.annotation.layout import QUEUE_GUIDELINES, QUEUES, guidelines_for

    assert set(QUEUE_GUIDELINES) == set(QUEUES)
    assert "explicit rating over the implicit signals" in guidelines_for("conflict")
    assert len({guidelines_for(q) for q in QUEUES}) == len(QUEUES)


def test_a_record_s_conversation_and_fields_share_one_numbering() -> None:
    """The annotator reads one record: the key in the last user turn and in the input text is one placeholder,
    the tool turn's phone keeps its own in the output, and an address the conversation did not hold gets the
    next number, not the conversation's [EMAIL_1]."""
    output = f"call {PLANTED['phone']} or write to someone.else@example.org"
    labels = chat_labels().with_columns(pl.lit(output).alias("output_text"))
    masked, _ = masked_items(outbox_frame(["i-0"]), labels)
    (record,) = build_records(masked)
    messages = record.fields["conversation"]
    assert isinstance(messages, list)
    last_turn = messages[4]["content"]
    input_text, output_text = masked.item(0, "input_text"), masked.item(0, "output_text")
    assert "[KEY_1]" in last_turn and last_turn == input_text
    assert "[PHONE_1]" in messages[3]["content"] and output_text == "call [PHONE_1] or write to [EMAIL_2]"
