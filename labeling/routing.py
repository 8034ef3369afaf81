"""Routing rules: which interactions go to which annotation queue, with what priority and why.

Five queues, one rule each:
- uncertain: the label model is unsure (confidence below a threshold, or no label at all);
  priority 1 - confidence.
- suspect: cleanlab flags the weak label as a likely issue; priority 1 - label quality.
- conflict: the user's explicit rating contradicts the label from implicit signals; a high constant priority
  (explicit ratings are rare and these disagreements are what tunes the labeling functions).
- audit: a small uniform sample, whatever the other rules say, for unbiased quality estimates. An item's draw
  is a hash of (seed, interaction_id) defined in this module, so a rerun, a replay, a new process or a library
  upgrade picks the same items.
- adjudication: annotators disagree about an item (their agreement below a threshold); priority 1 - agreement.
Human answers are final: an item annotators answered (`human`) goes to no queue but adjudication; the other
rules judge weak labels only.
Each queue keeps its highest-priority rows up to its budget (ties by interaction_id; audit ties by its draw, so a
binding budget still keeps a uniform sample). An item enters a queue at most once, ever: rows already queued
(`already_queued`) are dropped before budgets apply. An item may sit in several queues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

import numpy as np
import polars as pl
from numpy.typing import NDArray

Queue = Literal["uncertain", "suspect", "conflict", "audit", "adjudication"]
QUEUES: Final[tuple[Queue, ...]] = get_args(Queue)
OUTBOX_SCHEMA: Final = pl.Schema(
    {"interaction_id": pl.String, "queue": pl.String, "reason": pl.String, "priority": pl.Float64}
)
DEFAULT_BUDGETS: Final[Mapping[Queue, int | None]] = MappingProxyType(
    {"uncertain": 1000, "suspect": 1000, "conflict": 1000, "audit": 500, "adjudication": 200}
)
NO_LABEL: Final = -1
_AUDIT_DRAW: Final = "__audit_draw"


@dataclass(frozen=True, kw_only=True)
class RoutingConfig:
    """Options of `route`. budgets: rows kept per queue and call (None = no limit, 0 = queue off); queues not
    named keep their DEFAULT_BUDGETS. class_names: how reasons name classes 0..k-1."""

    confidence_threshold: float = 0.7
    audit_rate: float = 0.01
    # annotators' agreement on an item (share choosing the consensus) below which it goes to adjudication
    agreement_threshold: float = 0.75
    conflict_priority: float = 0.9
    audit_priority: float = 0.5
    budgets: Mapping[Queue, int | None] = field(default_factory=lambda: DEFAULT_BUDGETS)
    class_names: Sequence[str] = ("bad", "good")

    def __post_init__(self) -> None:
        _check_fraction("confidence_threshold", self.confidence_threshold, low_open=True)
        _check_fraction("audit_rate", self.audit_rate)
        _check_fraction("agreement_threshold", self.agreement_threshold)
        _check_fraction("conflict_priority", self.conflict_priority)
        _check_fraction("audit_priority", self.audit_priority)
        unknown = sorted(set(self.budgets) - set(QUEUES))
        if unknown:
            raise ValueError(f"expected budgets for queues among {list(QUEUES)}, got unknown queues {unknown}")
        for queue, budget in self.budgets.items():
            if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
                raise ValueError(f"expected the budget of {queue!r} to be an integer >= 0 or None, got {budget!r}")
        if not self.class_names or not all(isinstance(name, str) and name for name in self.class_names):
            raise ValueError(f"expected class_names as non-empty strings, got {self.class_names!r}")
        # freeze a merged copy, so a caller's dict changing later cannot change this config
        object.__setattr__(self, "budgets", MappingProxyType({**DEFAULT_BUDGETS, **self.budgets}))
        object.__setattr__(self, "class_names", tuple(self.class_names))


def route(
    items: pl.DataFrame,
    *,
    config: RoutingConfig,
    already_queued: pl.DataFrame | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Outbox rows (interaction_id, queue, reason, priority in [0, 1]) for the items that need a human.

    `items` has one row per interaction: interaction_id (str) and, per rule, confidence (label-model max
    probability; null = no label), is_issue and label_quality (from `labeling.confident.find_issues`), and
    optionally explicit and implicit_label (class or -1/null = none; without them no conflict fires), human
    (bool: annotators answered it; such an item goes to no queue but adjudication) and agreement (the share of
    its annotators who chose the consensus; below `agreement_threshold` it goes to adjudication).
    `already_queued` has interaction_id and queue for every outbox row of earlier calls (keep them: that is
    what makes "once per queue, ever" hold). Budgets count this call's new rows. Sorted by queue (in QUEUES
    order), then priority (highest first).
    """
    _check_items(items)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"expected seed to be an integer, got {seed!r}")
    queued = _check_already_queued(already_queued)
    if config.audit_rate > 0:
        items = items.with_columns(pl.Series(_AUDIT_DRAW, _uniform_draw(items.get_column("interaction_id"), seed)))
    outbox = []
    for rule in _rules(items, config):
        budget = config.budgets[rule.queue]
        if budget == 0:
            continue
        candidates = items.filter(rule.when).with_columns(
            priority=rule.priority.cast(pl.Float64).clip(0.0, 1.0), tiebreak=rule.tiebreak.cast(pl.Float64)
        )
        if queued is not None:
            seen = queued.filter(pl.col("queue") == rule.queue)
            candidates = candidates.join(seen, on="interaction_id", how="anti")
        kept = _top(candidates, budget)
        # reasons are formatted only for the rows kept: a queue may have a million candidates and a budget of 1000
        outbox.append(kept.select("interaction_id", queue=pl.lit(rule.queue), reason=rule.reason, priority="priority"))
    return pl.concat(outbox, how="vertical") if outbox else OUTBOX_SCHEMA.to_frame()


def _top(candidates: pl.DataFrame, budget: int | None) -> pl.DataFrame:
    """The `budget` highest priorities; ties by tiebreak, then interaction_id (so reruns keep the same rows)."""
    if budget is not None and candidates.height > budget:
        # a linear-time cut first, so only the rows that can make it get sorted
        cutoff = candidates.get_column("priority").top_k(budget).min()
        candidates = candidates.filter(pl.col("priority") >= cutoff)
    ordered = candidates.sort(["priority", "tiebreak", "interaction_id"], descending=[True, False, False])
    return ordered if budget is None else ordered.head(budget)


# ---------------------------------------------------------------------------------------------------------------
# The rules: which items, why, and how urgent


@dataclass(frozen=True)
class _Rule:
    queue: Queue
    when: pl.Expr
    reason: pl.Expr
    priority: pl.Expr
    tiebreak: pl.Expr


def _rules(items: pl.DataFrame, config: RoutingConfig) -> list[_Rule]:
    rules = _weak_label_rules(items, config)
    if "human" not in items.columns:
        return rules
    human = pl.col("human").fill_null(False)
    final = [_Rule(r.queue, r.when & ~human, r.reason, r.priority, r.tiebreak) for r in rules]
    if "agreement" in items.columns:
        agreement = pl.col("agreement").cast(pl.Float64).fill_nan(None)
        final.append(
            _Rule(
                "adjudication",
                when=human & (agreement < config.agreement_threshold).fill_null(False),
                reason=pl.format("annotators agree {} < {}", _two_decimals(agreement),
                                 pl.lit(f"{config.agreement_threshold:g}")),
                priority=1.0 - agreement,
                tiebreak=pl.lit(0.0),
            )
        )
    return final


def _weak_label_rules(items: pl.DataFrame, config: RoutingConfig) -> list[_Rule]:
    confidence = pl.col("confidence").cast(pl.Float64).fill_nan(None)
    quality = pl.col("label_quality").cast(pl.Float64).fill_nan(None)
    threshold = config.confidence_threshold
    rules = [
        _Rule(
            "uncertain",
            when=confidence.is_null() | (confidence < threshold),
            reason=pl.when(confidence.is_null())
            .then(pl.lit("label model has no label"))
            .otherwise(
                pl.format("label-model confidence {} < {}", _two_decimals(confidence), pl.lit(f"{threshold:g}"))
            ),
            priority=1.0 - confidence.fill_null(0.0),
            tiebreak=pl.lit(0.0),
        ),
        _Rule(
            "suspect",
            when=pl.col("is_issue").fill_null(False),
            reason=pl.when(quality.is_null())
            .then(pl.lit("cleanlab: label issue"))
            .otherwise(pl.format("cleanlab: label quality {}", _two_decimals(quality))),
            priority=1.0 - quality.fill_null(0.5),  # an issue without a score sits mid-queue
            tiebreak=pl.lit(0.0),
        ),
    ]
    if "explicit" in items.columns:
        explicit = pl.col("explicit").cast(pl.Int64).fill_null(NO_LABEL)
        implicit = pl.col("implicit_label").cast(pl.Int64).fill_null(NO_LABEL)
        rules.append(
            _Rule(
                "conflict",
                when=(explicit != NO_LABEL) & (implicit != NO_LABEL) & (explicit != implicit),
                reason=pl.format(
                    "explicit rating says {}, implicit signals say {}",
                    _class_name(explicit, config.class_names),
                    _class_name(implicit, config.class_names),
                ),
                priority=pl.lit(config.conflict_priority),
                tiebreak=pl.lit(0.0),
            )
        )
    if config.audit_rate > 0:
        draw = pl.col(_AUDIT_DRAW)
        rules.append(
            _Rule(
                "audit",
                when=draw < config.audit_rate,
                reason=pl.lit("uniform audit sample"),
                priority=pl.lit(config.audit_priority),
                tiebreak=draw,  # a binding budget keeps the smallest draws: still a uniform sample
            )
        )
    return rules


# FNV-1a (64-bit) over the id's UTF-8 bytes, then splitmix64's finaliser. Defined here, not borrowed from a
# library whose hash may change between versions: which items are audited must never change.
_FNV_OFFSET: Final = np.uint64(0xCBF29CE484222325)
_FNV_PRIME: Final = np.uint64(0x100000001B3)


def _uniform_draw(ids: pl.Series, seed: int) -> NDArray[np.float64]:
    """A uniform number in [0, 1) per id, fixed by (seed, id) alone."""
    arrow = ids.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: int64 offsets + bytes
    _, offsets_buffer, data_buffer = arrow.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        state = _FNV_OFFSET ^ _splitmix64(np.full(len(ids), seed % 2**64, dtype=np.uint64))
        for j in range(int(lengths.max(initial=0))):  # one step per byte position, over every id at once
            rows = np.flatnonzero(lengths > j)
            state[rows] = (state[rows] ^ data[starts[rows] + j]) * _FNV_PRIME
        bits = _splitmix64(state) >> np.uint64(11)  # 53 bits: exactly representable as a float
    return bits.astype(np.float64) / float(1 << 53)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _two_decimals(value: pl.Expr) -> pl.Expr:
    """0.5 -> "0.50" for values in [0, 1]; truncated, so 0.699 reads "0.69 < 0.7", never "0.70 < 0.7"."""
    hundredths = (value * 100 + 1e-9).floor().cast(pl.Int64)  # 1e-9: 0.29 * 100 is 28.999999999999996
    return pl.format("{}.{}", hundredths // 100, (hundredths % 100).cast(pl.String).str.zfill(2))


def _class_name(value: pl.Expr, names: Sequence[str]) -> pl.Expr:
    return value.replace_strict(dict(enumerate(names)), default=pl.format("class {}", value), return_dtype=pl.String)


# ---------------------------------------------------------------------------------------------------------------
# Validation: once, saying what was expected and what arrived

_NEEDED: Final = ("interaction_id", "confidence", "is_issue", "label_quality")
_CONFLICT_PAIR: Final = ("explicit", "implicit_label")


def _check_items(items: object) -> None:
    if not isinstance(items, pl.DataFrame):
        raise ValueError(f"expected items as a polars DataFrame, got {type(items).__name__}")
    missing = [name for name in _NEEDED if name not in items.columns]
    if missing:
        raise ValueError(
            f"expected items with columns {list(_NEEDED)} (and optionally {list(_CONFLICT_PAIR)}), "
            f"missing {missing}; got {items.columns}"
        )
    pair = [name for name in _CONFLICT_PAIR if name in items.columns]
    if len(pair) == 1:
        raise ValueError(f"expected both {list(_CONFLICT_PAIR)} (for the conflict rule) or neither, got only {pair}")
    schema = items.schema
    wrong = {
        name: str(schema[name])
        for name, ok in [
            ("interaction_id", schema["interaction_id"] == pl.String),
            ("confidence", schema["confidence"].is_numeric() or schema["confidence"] == pl.Null),
            ("is_issue", schema["is_issue"] in (pl.Boolean, pl.Null)),
            ("label_quality", schema["label_quality"].is_numeric() or schema["label_quality"] == pl.Null),
            *[(name, schema[name].is_integer() or schema[name] == pl.Null) for name in pair],
        ]
        if not ok
    }
    if wrong:
        raise ValueError(
            "expected interaction_id as string, confidence and label_quality numeric, is_issue boolean, explicit "
            f"and implicit_label integer; got {wrong}"
        )
    ids = items.get_column("interaction_id")
    if ids.null_count():
        raise ValueError("expected every row to have an interaction_id, got nulls")
    repeated = ids.filter(ids.is_duplicated()).unique().sort().head(5).to_list()
    if repeated:
        raise ValueError(f"expected one row per interaction_id, got repeated ids such as {repeated}")
    confidence = items.get_column("confidence").cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
    if confidence.size and (confidence.min() < 0.0 or confidence.max() > 1.0):
        raise ValueError(f"expected confidence in [0, 1], got values in [{confidence.min()}, {confidence.max()}]")


def _check_already_queued(queued: object) -> pl.DataFrame | None:
    if queued is None:
        return None
    if not isinstance(queued, pl.DataFrame) or not {"interaction_id", "queue"} <= set(queued.columns):
        got = queued.columns if isinstance(queued, pl.DataFrame) else type(queued).__name__
        raise ValueError(f"expected already_queued as a DataFrame with interaction_id and queue, got {got}")
    frame = (
        queued.select(pl.col("interaction_id").cast(pl.String), pl.col("queue").cast(pl.String)).drop_nulls().unique()
    )
    unknown = sorted(set(frame.get_column("queue").unique().to_list()) - set(QUEUES))
    if unknown:
        raise ValueError(f"expected already_queued queues among {list(QUEUES)}, got {unknown}")
    return frame


def _check_fraction(name: str, value: object, *, low_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and 0.0 <= value <= 1.0
    if not ok or (low_open and value == 0):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"expected {name} in {interval}, got {value!r}")
