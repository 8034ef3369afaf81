"""Outbox items turned into Argilla record payloads, with personal data and secrets masked first.

Pure code: polars frames in, plain payloads out (no Argilla import), so it is tested without a server.
Masking happens on the joined frame, before any payload exists: every free-text column that reaches a
record (input, output, the user's edit, the user's correction, the routing reason) goes through
`labeling.pii`, and the signals summary is built from the masked columns only. A chat input's messages
(`input_messages`, masked per message by the labeler already) are masked again here, per message, so a labels
row written by anything else still cannot carry personal data to Argilla.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from flywheel_feedback.labeling.conversations import mask_records
from flywheel_feedback.services.annotation.layout import (
    CLASS_LABELS,
    FIELD_CONVERSATION,
    FIELD_EDIT,
    FIELD_OUTPUT,
    FIELD_SIGNALS,
    LEGACY_FIELD_INPUT,
    META_LABEL_MODEL,
    META_WEAK_CONFIDENCE,
    META_WEAK_LABEL,
    confidence_text,
)
from flywheel_feedback.services.annotation.outbox import ITEM_COLUMNS
from flywheel_feedback.services.lake.tables import OUTBOX

FREE_TEXT: Final = ("input_text", "output_text", "edited_text", "correction_text", "reason")
# Label-table columns a record uses; those missing from an older table are treated as null.
LABEL_COLUMNS: Final[dict[str, Any]] = {
    "task": pl.String,
    "model_version": pl.String,
    "input_text": pl.String,
    "input_messages": pl.String,
    "output_text": pl.String,
    "edited_text": pl.String,
    "correction_text": pl.String,
    "edit_ratio": pl.Float64,
    "n_retries": pl.Int64,
    "copied": pl.Boolean,
    "accepted": pl.Boolean,
    "rephrase_similarity": pl.Float64,
    "dwell_ms": pl.Float64,
    "abandoned_explicit": pl.Boolean,
    "abandoned_inferred": pl.Boolean,
    "explicit_label": pl.Int64,
    "weak_label": pl.Int64,
    "confidence": pl.Float64,
    "label_model_version": pl.String,
}
EMPTY_TEXT: Final = "(empty)"  # a required Argilla text field, or a chat message, cannot be empty
# argilla-server 2.8 refuses a chat message longer than this (characters)
MAX_MESSAGE_CHARS: Final = 20_000

Message = dict[str, str]  # {"role": ..., "content": ...}, as Argilla's chat field takes it
FieldValue = str | list[Message]


@dataclass(frozen=True)
class RecordPayload:
    """One record of a queue's dataset; `interaction_id` becomes the record's id (Argilla's external_id). It has
    no suggestion: the weak label is in the signals field and the metadata (layout.py says why)."""

    interaction_id: str
    queue: str
    fields: dict[str, FieldValue]
    metadata: dict[str, str | float]


def masked_items(items: pl.DataFrame, labels: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Outbox items joined to their labels, free text masked; and the items that have no labels row.

    `items` has interaction_id, queue, reason, priority; `labels` is the labeler's table (one row per
    interaction). Items are kept in their order.
    """
    missing_cols = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing_cols or "interaction_id" not in labels.columns:
        raise ValueError(
            f"expected outbox items with columns {list(ITEM_COLUMNS)} and labels with interaction_id, "
            f"got items {items.columns} and labels {labels.columns[:8]}..."
        )
    # Cast to the expected types: a column that was null in every row may have been written as type Null.
    table = labels.select(
        pl.col("interaction_id").cast(pl.String),
        *(
            pl.col(name).cast(dtype) if name in labels.columns else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in LABEL_COLUMNS.items()
        ),
    ).unique(subset="interaction_id", keep="last")
    joined = items.select(pl.col(c).cast(OUTBOX.schema[c]) for c in ITEM_COLUMNS).join(
        table, on="interaction_id", how="left", maintain_order="left"
    )
    has_labels = pl.col("interaction_id").is_in(table.get_column("interaction_id").implode())
    found = mask_records(joined.filter(has_labels), FREE_TEXT, messages="input_messages")
    return found, items.filter(~has_labels)


def build_records(masked: pl.DataFrame, *, conversation_field: bool = True) -> list[RecordPayload]:
    """Record payloads from the rows of `masked_items` (already masked: nothing here masks again).

    `conversation_field` False builds them for a dataset of the older layout, whose input is a text field.
    """
    return [_record(row, conversation_field) for row in masked.iter_rows(named=True)]


def _record(row: dict[str, Any], conversation_field: bool) -> RecordPayload:
    fields: dict[str, FieldValue] = {}
    messages = conversation(row["input_messages"], row["input_text"])
    if conversation_field:
        fields[FIELD_CONVERSATION] = messages
    elif row["input_messages"] is None:
        fields[LEGACY_FIELD_INPUT] = _text(row["input_text"])
    else:  # the older text field shows the whole conversation too, as `role: content` paragraphs
        fields[LEGACY_FIELD_INPUT] = render_text(messages)
    fields[FIELD_OUTPUT] = _text(row["output_text"])
    fields[FIELD_SIGNALS] = signals_summary(row)
    if row["edited_text"]:
        fields[FIELD_EDIT] = edit_diff(_text(row["output_text"]), row["edited_text"])
    metadata: dict[str, str | float] = {
        name: str(row[name]) for name in ("task", "model_version", "queue", "reason") if row[name] not in (None, "")
    }
    if _finite(row["priority"]):
        metadata["priority"] = float(row["priority"])
    weak = row["weak_label"]
    if weak in CLASS_LABELS:
        metadata[META_WEAK_LABEL] = CLASS_LABELS[weak]
        if _finite(row["confidence"]):
            metadata[META_WEAK_CONFIDENCE] = float(confidence_text(row["confidence"]))
        if row["label_model_version"]:
            metadata[META_LABEL_MODEL] = str(row["label_model_version"])
    return RecordPayload(
        interaction_id=str(row["interaction_id"]),
        queue=str(row["queue"]),
        fields=fields,
        metadata=metadata,
    )


def conversation(messages_json: str | None, input_text: str | None) -> list[Message]:
    """The whole input as chat messages, in order: a chat's message list, or a plain prompt as one user
    message. Empty contents get a placeholder and over-long ones are cut (Argilla refuses both)."""
    decoded: list[dict[str, Any]] = json.loads(messages_json) if messages_json else []
    pairs = [(str(m.get("role") or "user"), m.get("content")) for m in decoded] or [("user", input_text)]
    return [{"role": role, "content": _message_text(content)} for role, content in pairs]


def render_text(messages: list[Message]) -> str:
    """A conversation as one text, a `role: content` paragraph per message (for an older dataset's text field)."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _message_text(content: object) -> str:
    text = _text(content)
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    note = f" [... cut: {len(text)} characters in all]"
    return text[: MAX_MESSAGE_CHARS - len(note)] + note


def edit_diff(output: str, edited: str) -> str:
    """The user's edit as a word diff against the output, in Markdown: what they removed struck through, what
    they added in bold, the rest as it was."""
    import difflib

    before, after = output.split(), edited.split()
    parts: list[str] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append("~~" + " ".join(before[a0:a1]) + "~~")
        if op in ("insert", "replace"):
            parts.append("**" + " ".join(after[b0:b1]) + "**")
        if op == "equal":
            parts.append(" ".join(before[a0:a1]))
    return " ".join(parts)


def signals_summary(row: dict[str, Any]) -> str:
    """What the user did with the output, in a few Markdown lines for the annotator."""
    lines: list[str] = []
    if row.get("reason"):
        lines.append(f"**Why it is here:** {row['reason']}")
    weak = row.get("weak_label")
    if weak in CLASS_LABELS:
        conf = row.get("confidence")
        conf_text = f" (confidence {confidence_text(float(conf))})" if conf is not None and _finite(conf) else ""
        lines.append(f"**Weak label:** {CLASS_LABELS[weak]}{conf_text}")
    else:
        lines.append("**Weak label:** none (no labeling function voted)")
    explicit = row.get("explicit_label")
    if explicit in CLASS_LABELS:
        lines.append(f"**The user rated it:** {CLASS_LABELS[explicit]}")

    behaviour: list[str] = []
    if row.get("edited_text"):
        ratio = row.get("edit_ratio")
        behaviour.append(f"edited ({ratio:.0%} changed)" if _finite(ratio) else "edited")
    retries = row.get("n_retries")
    if retries:
        behaviour.append(f"{retries} retr{'y' if retries == 1 else 'ies'}")
    for column, said in (("copied", "copied"), ("accepted", "accepted")):
        if row.get(column) is True:
            behaviour.append(said)
    similarity = row.get("rephrase_similarity")
    if _finite(similarity):
        behaviour.append(f"next prompt {similarity:.0%} similar (rephrase?)")
    dwell = row.get("dwell_ms")
    if isinstance(dwell, int | float) and _finite(dwell):
        behaviour.append(f"read for {dwell / 1000:.1f} s")
    if row.get("abandoned_explicit") is True:
        behaviour.append("abandoned (said so)")
    elif row.get("abandoned_inferred") is True:
        behaviour.append("abandoned (went quiet)")
    lines.append(f"**What the user did:** {', '.join(behaviour) if behaviour else 'nothing recorded'}")
    if row.get("correction_text"):
        lines.append(f"**The user's correction:** {row['correction_text']}")
    return "\n\n".join(lines)


def _text(value: object) -> str:
    return str(value) if value is not None and str(value).strip() else EMPTY_TEXT


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

