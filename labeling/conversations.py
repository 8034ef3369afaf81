"""Chat inputs as whole conversations: how they are stored, masked, read back and rendered.

The labels table keeps an interaction's chat input as the JSON text of its message list (`input_messages`,
null for a plain prompt): one string column survives MERGE, schema evolution of older tables and every other
Delta reader unchanged, where a nested column would not. Slices and exports, which people and trainers read,
hold the conversation as a list of {role, content} structs (`MESSAGES`), a plain prompt as one user message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import polars as pl

from flywheel_feedback.labeling.pii import Placeholders, RecordMasker, mask_field, mask_rows, mask_text
from flywheel_feedback.labeling.pii_fast import PREFILTER

MESSAGE: Final = pl.Struct({"role": pl.String(), "content": pl.String()})
MESSAGES: Final = pl.List(MESSAGE)
ROLES: Final = ("system", "user", "assistant", "tool")


def messages_json_expr(messages: pl.Expr) -> pl.Expr:
    """The JSON text of a list of {role, content} structs; null when there are none (a plain prompt)."""
    encoded = pl.format("[{}]", messages.list.eval(pl.element().struct.json_encode()).list.join(","))
    return pl.when(messages.list.len() > 0).then(encoded).otherwise(None)


def decode_expr(messages_json: pl.Expr) -> pl.Expr:
    """The message list of the JSON text (null stays null)."""
    return messages_json.str.json_decode(MESSAGES)


def conversation_expr(messages_json: pl.Expr, text: pl.Expr) -> pl.Expr:
    """The whole input as messages: the chat messages, or the plain prompt `text` as one user message."""
    single = pl.concat_list(pl.struct(role=pl.lit("user"), content=text.fill_null("")))
    return pl.coalesce(decode_expr(messages_json), single).cast(MESSAGES)


def with_turn(conversation: pl.Expr, role: str, content: pl.Expr) -> pl.Expr:
    """The conversation with one more message at its end."""
    return pl.concat_list(conversation, pl.concat_list(pl.struct(role=pl.lit(role), content=content))).cast(MESSAGES)


def render_expr(conversation: pl.Expr) -> pl.Expr:
    """A conversation as one text, a `role: content` line per message (for text classifiers)."""
    lines = conversation.list.eval(
        pl.concat_str(pl.element().struct.field("role"), pl.lit(": "), pl.element().struct.field("content"))
    )
    return lines.list.join("\n")


def mask_conversation(text: str | None, numbering: Placeholders) -> str | None:
    """One JSON message list with each message's content masked on Presidio's path, numbered by `numbering`
    (the record's, so its placeholders match those of the record's other fields): a `RecordMasker`."""
    if text is None:
        return None
    turns = [{**m, "content": mask_field(m.get("content"), numbering)} for m in json.loads(text)]
    return json.dumps(turns, ensure_ascii=False, separators=(",", ":"))


def mask_records(frame: pl.DataFrame, columns: Sequence[str], *, messages: str) -> pl.DataFrame:
    """`frame` with the conversation column `messages` and the text `columns` masked on Presidio's path (people
    read them), a row being one record: its conversation and its fields share one numbering, so the address in
    the last user turn and in the input text is the same placeholder. The conversation is numbered first, as
    it is read first."""
    fields: dict[str, RecordMasker] = {c: mask_field for c in columns if c in frame.columns}
    return mask_rows(frame, {messages: mask_conversation, **fields})


def mask_messages(series: pl.Series) -> pl.Series:
    """JSON message lists with each message's content masked on its own (masking the JSON text whole could
    swallow its quotes), numbered per conversation: the same e-mail in two turns is one placeholder, two
    e-mails in two turns are [EMAIL_1] and [EMAIL_2], as within one text. Each distinct conversation is
    decoded once; polars prefilters all contents in one batch and only the conversations with a flagged
    content are masked and encoded again."""
    column = series.cast(pl.String)
    distinct = column.drop_nulls().unique()
    if distinct.is_empty():
        return column
    decoded: list[list[dict[str, str]]] = [json.loads(v) for v in distinct.to_list()]
    contents = pl.Series([m.get("content") for conv in decoded for m in conv], dtype=pl.String)
    flagged = iter(contents.str.contains(PREFILTER).fill_null(False).to_list())
    encoded: list[str] = []
    for text, conv in zip(distinct.to_list(), decoded, strict=True):
        marks = [next(flagged) for _ in conv]
        if not any(marks):
            encoded.append(text)
            continue
        numbering = Placeholders()
        turns = [{**m, "content": mask_text(m.get("content"), engine="fast", placeholders=numbering)} if mark else m
                 for m, mark in zip(conv, marks, strict=True)]
        encoded.append(json.dumps(turns, ensure_ascii=False, separators=(",", ":")))
    return column.replace_strict(distinct, pl.Series(encoded, dtype=pl.String), default=None,
                                 return_dtype=pl.String).alias(series.name)
