"""The rows of eval slices and training exports: masked text, the reference output, labels and metadata.

Masking (labeling.pii) runs once per distinct value of a column, not once per row: production text
repeats, so a million rows cost what their distinct texts cost. The reference output is the best
statement of what the model should have said: an annotator's correction, else the user's stated
correction, else the text the user kept after editing; an "edit" that changed nothing is no reference.
References are chosen after masking, so a pair that differs only in masked data is not a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from flywheel_feedback.labeling.conversations import MESSAGES, conversation_expr
from flywheel_feedback.labeling.pii import mask_expr

CLASS_NAMES: Final = ("bad", "good")
REFERENCE_SOURCES: Final = (  # (column, what the reference is), most authoritative first
    ("annotator_correction", "annotator_correction"),
    ("correction_text", "user_correction"),
    ("edited_text", "user_edit"),
)
TEXT_COLUMNS: Final = ("input_text", "output_text", "edited_text", "correction_text", "annotator_correction")
METADATA_FIELDS: Final[dict[str, pl.DataType]] = {
    "label_model_version": pl.String(),
    "lf_fingerprint": pl.String(),
    "weak_label": pl.Int64(),
    "weak_confidence": pl.Float64(),
    "annotators": pl.UInt32(),
    "edit_ratio": pl.Float64(),
    "n_retries": pl.UInt32(),
    "copied": pl.Boolean(),
    "accepted": pl.Boolean(),
    "corrected": pl.Boolean(),
    "explicit_label": pl.Int32(),
}
SLICE_SCHEMA: Final = pl.Schema(
    {
        "interaction_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "app": pl.String(),
        "task": pl.String(),
        "segment": pl.String(),
        "model_id": pl.String(),
        "model_version": pl.String(),
        "topic_cluster": pl.Int32(),
        "topic": pl.String(),
        "stratum": pl.String(),
        "input": pl.String(),  # the prompt, or a chat's last user message
        "input_messages": MESSAGES,  # the whole input: system prompt, earlier turns, tool messages, the question
        "output": pl.String(),
        "reference_output": pl.String(),
        "reference_source": pl.String(),
        "label": pl.Int64(),
        "label_name": pl.String(),
        "label_source": pl.String(),
        "is_weak": pl.Boolean(),
        "confidence": pl.Float64(),
        "added_in": pl.Int32(),
        # metadata as flat columns: polars decodes a struct column several times slower than its fields
        **METADATA_FIELDS,
    }
)


def mask_distinct(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """`frame` with the listed string columns masked, each distinct value masked once."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"expected columns {list(columns)} to mask; missing {missing}")
    out = []
    for name in columns:
        column = frame.get_column(name).cast(pl.String)
        distinct = column.drop_nulls().unique()
        masked = distinct.to_frame("v").select(mask_expr(pl.col("v"))).to_series()
        out.append(column.replace_strict(distinct, masked, default=None, return_dtype=pl.String).alias(name))
    return frame.with_columns(out)


def _normalized(column: pl.Series) -> pl.Series:
    """Whitespace collapsed and trimmed, computed once per distinct value."""
    distinct = column.drop_nulls().unique()
    squeezed = distinct.str.replace_all(r"\s+", " ").str.strip_chars()
    return column.replace_strict(distinct, squeezed, default=None, return_dtype=pl.String)


def with_reference(frame: pl.DataFrame) -> pl.DataFrame:
    """Adds reference_output and reference_source (null where there is none). Expects masked text."""
    if "output_text" not in frame.columns:
        raise ValueError(f"expected an output_text column, got {frame.columns}")
    present = [(c, s) for c, s in REFERENCE_SOURCES if c in frame.columns]
    # a column that is null in every row may arrive typed Null
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in ["output_text", *(c for c, _ in present)])
    said = _normalized(frame.get_column("output_text")).fill_null("")
    text: pl.Expr = pl.lit(None, dtype=pl.String)
    source: pl.Expr = pl.lit(None, dtype=pl.String)
    usable = {}
    for column, _ in present:
        # a reference must say something, and something other than what the model said
        norm = _normalized(frame.get_column(column))
        usable[column] = ((norm.str.len_chars() > 0) & (norm != said)).fill_null(False).alias(f"_usable_{column}")
    frame = frame.with_columns(usable.values())
    for column, name in reversed(present):  # the most authoritative applies last, so it wins
        ok = pl.col(f"_usable_{column}")
        text = pl.when(ok).then(pl.col(column)).otherwise(text)
        source = pl.when(ok).then(pl.lit(name)).otherwise(source)
    return frame.with_columns(text.alias("reference_output"), source.alias("reference_source")).drop(
        [f"_usable_{c}" for c in usable]
    )


def slice_records(rows: pl.DataFrame, *, cluster_names: Sequence[str]) -> pl.DataFrame:
    """Slice rows in SLICE_SCHEMA from masked, referenced traffic rows (with topic_cluster, stratum, added_in)."""
    need = ("interaction_id", "ts", "task", "input_text", "output_text", "label", "label_source", "confidence",
            "topic_cluster", "stratum", "added_in", "reference_output", "reference_source")
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise ValueError(f"expected traffic rows with columns {list(need)}; missing {missing}")
    names = pl.Series(list(cluster_names), dtype=pl.String)
    human = pl.col("label_source") == "human"

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in rows.columns else pl.lit(None, dtype=dtype).alias(name)

    # the label model's confidence is kept as weak_confidence (a human label's row says 1.0)
    metadata = [
        col("confidence", t).alias(k) if k == "weak_confidence" else col(k, t) for k, t in METADATA_FIELDS.items()
    ]
    return rows.select(
        col("interaction_id", pl.String()),
        col("ts", pl.Datetime("us", "UTC")),
        col("app", pl.String()),
        col("task", pl.String()),
        col("segment", pl.String()),
        col("model_id", pl.String()),
        col("model_version", pl.String()),
        col("topic_cluster", pl.Int32()),
        _topic_expr(names),
        col("stratum", pl.String()),
        pl.col("input_text").cast(pl.String).alias("input"),
        conversation_expr(col("input_messages", pl.String()), pl.col("input_text").cast(pl.String))
        .alias("input_messages"),
        pl.col("output_text").cast(pl.String).alias("output"),
        col("reference_output", pl.String()),
        col("reference_source", pl.String()),
        col("label", pl.Int64()),
        pl.col("label").cast(pl.Int64).replace_strict(
            list(range(len(CLASS_NAMES))), list(CLASS_NAMES), default=None, return_dtype=pl.String
        ).alias("label_name"),
        col("label_source", pl.String()),
        (~human).fill_null(True).alias("is_weak"),
        # a human label is taken as certain; the label model's own confidence stays in metadata
        pl.when(human).then(1.0).otherwise(pl.col("confidence")).cast(pl.Float64).alias("confidence"),
        col("added_in", pl.Int32()),
        *metadata,
    ).sort("interaction_id")


def _topic_expr(names: pl.Series) -> pl.Expr:
    """The cluster's name from its id."""
    if names.is_empty():
        return pl.lit(None, dtype=pl.String).alias("topic")
    ids = pl.Series(range(names.len()), dtype=pl.Int32)
    return pl.col("topic_cluster").cast(pl.Int32).replace_strict(ids, names, default=None,
                                                                  return_dtype=pl.String).alias("topic")
