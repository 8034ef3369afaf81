"""Training records from labeled interactions: SFT examples, preference pairs, classifier data.

- SFT: input -> the output the model should give: the reference (annotator's or user's correction, the
  user's edit) where there is one, else the model's own output when it was good and the user used it
  (accepted or copied).
- Preference pairs: chosen = what the user (or an annotator) preferred, rejected = the original output.
  Chosen is a reference, or a regeneration the user used after retrying. A pair whose two sides are the
  same text (after masking and whitespace) teaches nothing and is dropped.
- Classifier: text, label, confidence for human gold and confident weak labels.

Inputs are masked, referenced frames (labeling.records); outputs are frames, plus the JSON-lines layouts
(chat messages for SFT, prompt/chosen/rejected for pairs) as frames with nested columns.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import polars as pl

from flywheel_feedback.labeling.records import CLASS_NAMES
from flywheel_feedback.labeling.slicing import HUMAN, eligible_expr

Kind = Literal["sft", "preference", "classifier"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
GOOD: Final = 1
BASE_COLUMNS: Final = ("interaction_id", "task", "model_version", "input_text", "output_text", "label",
                       "label_source", "confidence", "covered")


def _check(labeled: pl.DataFrame, extra: tuple[str, ...] = ()) -> None:
    need = (*BASE_COLUMNS, *extra)
    missing = [c for c in need if c not in labeled.columns]
    if missing:
        raise ValueError(f"expected labeled interactions with columns {list(need)}; missing {missing}")


def _norm(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def sft_records(labeled: pl.DataFrame, *, min_confidence: float) -> pl.DataFrame:
    """One example per interaction that has a reference or a good output the user used."""
    _check(labeled, ("reference_output", "reference_source", "accepted", "copied"))
    used = pl.col("accepted").fill_null(False) | pl.col("copied").fill_null(False)
    good = (pl.col("label") == GOOD) & eligible_expr(min_confidence) & used
    has_ref = pl.col("reference_output").is_not_null()
    return (
        labeled.filter(has_ref | good)
        .select(
            "interaction_id",
            pl.col("input_text").alias("prompt"),
            pl.when(has_ref).then(pl.col("reference_output")).otherwise(pl.col("output_text")).alias("completion"),
            pl.when(has_ref).then(pl.col("reference_source")).otherwise(pl.lit("accepted_output")).alias("source"),
            "task",
            "model_version",
            "label_source",
            "confidence",
        )
        .filter((_norm(pl.col("prompt")) != "") & (_norm(pl.col("completion")) != ""))
        .sort("interaction_id")
    )


def preference_pairs(labeled: pl.DataFrame, regenerations: pl.DataFrame) -> pl.DataFrame:
    """Pairs from references (chosen = reference) and from used regenerations (chosen = the regeneration).

    `regenerations` has interaction_id (the original) and new_interaction_id (what the retry produced)."""
    _check(labeled, ("reference_output", "reference_source", "accepted", "copied"))
    if not {"interaction_id", "new_interaction_id"} <= set(regenerations.columns):
        raise ValueError(f"expected regenerations with interaction_id, new_interaction_id; got {regenerations.columns}")
    keep = ("interaction_id", "prompt", "chosen", "rejected", "source", "chosen_interaction_id", "task",
            "model_version")
    from_reference = labeled.filter(pl.col("reference_output").is_not_null()).select(
        "interaction_id",
        pl.col("input_text").alias("prompt"),
        pl.col("reference_output").alias("chosen"),
        pl.col("output_text").alias("rejected"),
        pl.col("reference_source").alias("source"),
        pl.col("interaction_id").alias("chosen_interaction_id"),
        "task",
        "model_version",
    )
    used = pl.col("accepted").fill_null(False) | pl.col("copied").fill_null(False)
    regenerated = labeled.filter(used).select(
        pl.col("interaction_id").alias("new_interaction_id"), pl.col("output_text").alias("chosen")
    )
    from_retry = (
        regenerations.select(pl.col("interaction_id").cast(pl.String), pl.col("new_interaction_id").cast(pl.String))
        .drop_nulls()
        .unique()
        .join(labeled, on="interaction_id", how="inner")
        .join(regenerated, on="new_interaction_id", how="inner")
        .select(
            "interaction_id",
            pl.col("input_text").alias("prompt"),
            "chosen",
            pl.col("output_text").alias("rejected"),
            pl.lit("accepted_regeneration").alias("source"),
            pl.col("new_interaction_id").alias("chosen_interaction_id"),
            "task",
            "model_version",
        )
    )
    pairs = pl.concat([from_reference.select(keep), from_retry.select(keep)])
    differs = _norm(pl.col("chosen")) != _norm(pl.col("rejected"))
    said = (_norm(pl.col("chosen")) != "") & (_norm(pl.col("rejected")) != "") & (_norm(pl.col("prompt")) != "")
    return (
        pairs.filter((differs & said).fill_null(False))
        .with_columns(pl.format("{}:{}", "interaction_id", "chosen_interaction_id").alias("pair_id"))
        .unique("pair_id", keep="first")
        .sort("pair_id")
        .select("pair_id", *keep)
    )


def classifier_records(labeled: pl.DataFrame, *, min_confidence: float) -> pl.DataFrame:
    """(text, label, confidence) for human gold and weak labels at or above `min_confidence`."""
    _check(labeled)
    human = pl.col("label_source") == HUMAN
    return (
        labeled.filter(eligible_expr(min_confidence) & pl.col("label").is_in(list(range(len(CLASS_NAMES)))))
        .select(
            "interaction_id",
            pl.concat_str([pl.col("input_text").fill_null(""), pl.col("output_text").fill_null("")],
                          separator="\n\n").alias("text"),
            pl.col("input_text").alias("input"),
            pl.col("output_text").alias("output"),
            pl.col("label").cast(pl.Int64),
            pl.col("label").cast(pl.Int64).replace_strict(list(range(len(CLASS_NAMES))), list(CLASS_NAMES),
                                                          return_dtype=pl.String).alias("label_name"),
            pl.when(human).then(1.0).otherwise(pl.col("confidence")).cast(pl.Float64).alias("confidence"),
            "label_source",
            "task",
            "model_version",
        )
        .sort("interaction_id")
    )


def jsonl_layout(kind: Kind, records: pl.DataFrame) -> pl.DataFrame:
    """The JSON-lines shape of an export: chat messages (SFT), prompt/chosen/rejected, text/label/confidence."""
    if kind == "sft":
        messages = pl.concat_list(
            pl.struct(role=pl.lit("user"), content=pl.col("prompt")),
            pl.struct(role=pl.lit("assistant"), content=pl.col("completion")),
        )
        meta = pl.struct("source", "task", "model_version", "label_source")
        return records.select(pl.col("interaction_id").alias("id"), messages.alias("messages"), meta.alias("metadata"))
    if kind == "preference":
        meta = pl.struct("source", "interaction_id", "chosen_interaction_id", "task", "model_version")
        return records.select(pl.col("pair_id").alias("id"), "prompt", "chosen", "rejected", meta.alias("metadata"))
    if kind == "classifier":
        meta = pl.struct("label_name", "label_source", "task", "model_version")
        return records.select(pl.col("interaction_id").alias("id"), "text", "label", "confidence",
                              meta.alias("metadata"))
    raise ValueError(f"expected kind among {list(KINDS)}, got {kind!r}")
