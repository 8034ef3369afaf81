"""Chat inputs as whole conversations: how they are stored, masked, read back and rendered.

The labels table keeps an interaction's chat input as the JSON text of its message list (`input_messages`,
null for a plain prompt): one string column survives MERGE, schema evolution of older tables and every other
Delta reader unchanged, where a nested column would not. Slices and exports, which people and trainers read,
hold the conversation as a list of {role, content} structs (`MESSAGES`), a plain prompt as one user message.
"""

from __future__ import annotations

import json
from typing import Final

import polars as pl

from flywheel_feedback.labeling.pii import mask_series

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


def mask_messages(series: pl.Series) -> pl.Series:
    """JSON message lists with each message's content masked on its own (masking the JSON text whole could
    swallow its quotes). Each distinct conversation is decoded once; all contents are masked in one batch."""
    column = series.cast(pl.String)
    distinct = column.drop_nulls().unique()
    if distinct.is_empty():
        return column
    decoded: list[list[dict[str, str]]] = [json.loads(v) for v in distinct.to_list()]
    contents = pl.Series([m.get("content") for conv in decoded for m in conv], dtype=pl.String)
    masked = iter(mask_series(contents).to_list())
    encoded = [
        json.dumps([{**m, "content": next(masked)} for m in conv], ensure_ascii=False, separators=(",", ":"))
        for conv in decoded
    ]
    return column.replace_strict(distinct, pl.Series(encoded, dtype=pl.String), default=None,
                                 return_dtype=pl.String).alias(series.name)
