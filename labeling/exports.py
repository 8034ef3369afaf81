"""Training records from labeled interactions: SFT examples, preference pairs, classifier data.

Each kind has one layout, the one trainers load without glue, and every file of a version (Parquet, JSON lines)
has its columns:

- SFT: `messages`, the whole conversation (system prompt, earlier turns, tool messages, the user's question)
  and then the assistant turn it should have been answered with: the reference (annotator's or user's
  correction, the user's edit) where there is one, else the model's own output when it was good and the user
  used it (accepted or copied). A plain prompt is one user message. TRL's SFT trainer and OpenAI's chat
  fine-tuning read it.
- Preference pairs (TRL's conversational preference layout): `prompt` is the conversation, `chosen` and
  `rejected` are one assistant turn each. Chosen is what the user (or an annotator) preferred: a reference, or a
  regeneration the user used after retrying; rejected is the output they edited or retried. A pair whose two
  sides are the same text (after masking and whitespace) teaches nothing and is dropped.
- Classifier: text, label, confidence, source (human / weak), for human gold and confident weak labels; the
  text of a chat is its conversation and the answer, a `role: content` line each.

Inputs are masked, referenced frames (labeling.records) with `input_messages` (labeling.conversations).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import polars as pl

from flywheel_feedback.labeling.conversations import MESSAGES, conversation_expr, render_expr, with_turn
from flywheel_feedback.labeling.records import CLASS_NAMES
from flywheel_feedback.labeling.slicing import HUMAN, eligible_expr

Kind = Literal["sft", "preference", "classifier"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
GOOD: Final = 1
BASE_COLUMNS: Final = ("interaction_id", "task", "model_version", "input_text", "output_text", "label",
                       "label_source", "confidence", "covered")
# the columns of each kind's records, in order: what its Parquet and JSON-lines files hold
COLUMNS: Final[dict[Kind, tuple[str, ...]]] = {
    "sft": ("interaction_id", "messages", "source", "task", "model_version", "label_source", "confidence"),
    "preference": ("pair_id", "prompt", "chosen", "rejected", "source", "interaction_id", "chosen_interaction_id",
                   "task", "model_version"),
    "classifier": ("interaction_id", "text", "label", "confidence", "source", "label_name", "input", "output",
                   "task", "model_version"),
}


def _with_conversation(labeled: pl.DataFrame) -> pl.DataFrame:
    messages = (pl.col("input_messages").cast(pl.String) if "input_messages" in labeled.columns
                else pl.lit(None, dtype=pl.String))
    return labeled.with_columns(conversation_expr(messages, pl.col("input_text")).alias("_conversation"))


def _no_empty_message(conversation: pl.Expr) -> pl.Expr:
    """Every message says something (chat fine-tuning refuses empty content)."""
    return conversation.list.eval(
        _norm(pl.element().struct.field("content").fill_null("")) != ""
    ).list.all()


def _assistant(content: pl.Expr) -> pl.Expr:
    return pl.concat_list(pl.struct(role=pl.lit("assistant"), content=content)).cast(MESSAGES)


def _check(labeled: pl.DataFrame, extra: tuple[str, ...] = ()) -> None:
    need = (*BASE_COLUMNS, *extra)
    missing = [c for c in need if c not in labeled.columns]
    if missing:
        raise ValueError(f"expected labeled interactions with columns {list(need)}; missing {missing}")


def _norm(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def sft_records(labeled: pl.DataFrame, *, min_confidence: float) -> pl.DataFrame:
    """One conversation per interaction that has a reference or a good output the user used."""
    _check(labeled, ("reference_output", "reference_source", "accepted", "copied"))
    used = pl.col("accepted").fill_null(False) | pl.col("copied").fill_null(False)
    good = (pl.col("label") == GOOD) & eligible_expr(min_confidence) & used
    has_ref = pl.col("reference_output").is_not_null()
    completion = pl.when(has_ref).then(pl.col("reference_output")).otherwise(pl.col("output_text"))
    return (
        _with_conversation(labeled.filter(has_ref | good))
        .filter((_norm(pl.col("input_text").fill_null("")) != "") & (_norm(completion.fill_null("")) != ""))
        .select(
            "interaction_id",
            with_turn(pl.col("_conversation"), "assistant", completion).alias("messages"),
            pl.when(has_ref).then(pl.col("reference_source")).otherwise(pl.lit("accepted_output")).alias("source"),
            "task",
            "model_version",
            "label_source",
            "confidence",
        )
        .filter(_no_empty_message(pl.col("messages")))
        .sort("interaction_id")
        .select(COLUMNS["sft"])
    )


def preference_pairs(labeled: pl.DataFrame, regenerations: pl.DataFrame) -> pl.DataFrame:
    """Pairs from references (chosen = reference) and from used regenerations (chosen = the regeneration).

    `regenerations` has interaction_id (the original) and new_interaction_id (what the retry produced)."""
    _check(labeled, ("reference_output", "reference_source", "accepted", "copied"))
    if not {"interaction_id", "new_interaction_id"} <= set(regenerations.columns):
        raise ValueError(f"expected regenerations with interaction_id, new_interaction_id; got {regenerations.columns}")
    keep = ("interaction_id", "_conversation", "input_text", "chosen", "rejected", "source", "chosen_interaction_id",
            "task", "model_version")
    labeled = _with_conversation(labeled)
    from_reference = labeled.filter(pl.col("reference_output").is_not_null()).select(
        "interaction_id",
        "_conversation",
        "input_text",
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
            "_conversation",
            "input_text",
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
    said = (_norm(pl.col("chosen")) != "") & (_norm(pl.col("rejected")) != "") & (_norm(pl.col("input_text")) != "")
    return (
        pairs.filter((differs & said & _no_empty_message(pl.col("_conversation"))).fill_null(False))
        .with_columns(
            pl.format("{}:{}", "interaction_id", "chosen_interaction_id").alias("pair_id"),
            pl.col("_conversation").alias("prompt"),
            _assistant(pl.col("chosen")).alias("chosen"),
            _assistant(pl.col("rejected")).alias("rejected"),
        )
        .unique("pair_id", keep="first")
        .sort("pair_id")
        .select(COLUMNS["preference"])
    )


def classifier_records(labeled: pl.DataFrame, *, min_confidence: float) -> pl.DataFrame:
    """(text, label, confidence, source) for human gold and weak labels at or above `min_confidence`."""
    _check(labeled)
    human = pl.col("label_source") == HUMAN
    chat = (pl.col("input_messages").cast(pl.String).is_not_null() if "input_messages" in labeled.columns
            else pl.lit(False))
    plain = pl.concat_str([pl.col("input_text").fill_null(""), pl.col("output_text").fill_null("")], separator="\n\n")
    whole = render_expr(with_turn(pl.col("_conversation"), "assistant", pl.col("output_text").fill_null("")))
    return (
        _with_conversation(
            labeled.filter(eligible_expr(min_confidence) & pl.col("label").is_in(list(range(len(CLASS_NAMES)))))
        )
        .select(
            "interaction_id",
            pl.when(chat).then(whole).otherwise(plain).alias("text"),
            pl.col("label").cast(pl.Int64),
            pl.when(human).then(1.0).otherwise(pl.col("confidence")).cast(pl.Float64).alias("confidence"),
            pl.col("label_source").alias("source"),
            pl.col("label").cast(pl.Int64).replace_strict(list(range(len(CLASS_NAMES))), list(CLASS_NAMES),
                                                          return_dtype=pl.String).alias("label_name"),
            pl.col("input_text").alias("input"),
            pl.col("output_text").alias("output"),
            "task",
            "model_version",
        )
        .sort("interaction_id")
        .select(COLUMNS["classifier"])
    )
