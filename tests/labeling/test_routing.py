"""Routing rules on hand-made frames: each rule, budgets, once-per-queue, the audit sample, validation."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest

from flywheel_feedback.labeling.routing import QUEUES, RoutingConfig, _uniform_draw, route

NO_AUDIT = RoutingConfig(audit_rate=0.0)


def frame(**columns: Sequence[object]) -> pl.DataFrame:
    """Items with harmless defaults (confident, no issue, no explicit rating) for the columns not given."""
    n = len(next(iter(columns.values())))
    base: dict[str, Sequence[object]] = {
        "interaction_id": [f"i{j}" for j in range(n)],
        "confidence": [0.99] * n,
        "is_issue": [False] * n,
        "label_quality": [0.95] * n,
        "explicit": [-1] * n,
        "implicit_label": [1] * n,
    }
    overrides = {"interaction_id": pl.String, "confidence": pl.Float64, "label_quality": pl.Float64}
    return pl.DataFrame(base | columns, schema_overrides=overrides)


def rows(outbox: pl.DataFrame) -> list[tuple[str, str, str, float]]:
    return [(r[0], r[1], r[2], round(r[3], 6)) for r in outbox.iter_rows()]


def test_each_rule_fires_with_a_readable_reason() -> None:
    items = frame(
        interaction_id=["low", "issue", "clash", "fine"],
        confidence=[0.54, 0.9, 0.9, 0.9],
        is_issue=[False, True, False, False],
        label_quality=[0.9, 0.08, 0.9, 0.9],
        explicit=[-1, -1, 0, 1],
        implicit_label=[1, 1, 1, 1],
    )
    assert rows(route(items, config=NO_AUDIT)) == [
        ("low", "uncertain", "label-model confidence 0.54 < 0.7", 0.46),
        ("issue", "suspect", "cleanlab: label quality 0.08", 0.92),
        ("clash", "conflict", "explicit rating says bad, implicit signals say good", 0.9),
    ]
    assert route(items, config=NO_AUDIT).schema == pl.Schema(
        {"interaction_id": pl.String, "queue": pl.String, "reason": pl.String, "priority": pl.Float64}
    )


def test_reasons_never_print_a_confidence_at_the_threshold() -> None:
    items = frame(confidence=[0.699, 0.29, 0.0])
    assert route(items, config=NO_AUDIT)["reason"].to_list() == [
        "label-model confidence 0.00 < 0.7",
        "label-model confidence 0.29 < 0.7",
        "label-model confidence 0.69 < 0.7",
    ]


def test_missing_values_route_sensibly() -> None:
    items = frame(
        interaction_id=["nolabel", "noscore", "noexplicit"],
        confidence=[None, 0.9, 0.9],
        is_issue=[False, True, None],
        label_quality=[None, None, None],
        explicit=[None, -1, None],
        implicit_label=[0, None, 1],
    )
    assert rows(route(items, config=NO_AUDIT)) == [
        ("nolabel", "uncertain", "label model has no label", 1.0),
        ("noscore", "suspect", "cleanlab: label issue", 0.5),
    ]


def test_without_explicit_columns_no_conflict_fires() -> None:
    items = frame(confidence=[0.1, 0.9]).drop("explicit", "implicit_label")
    assert route(items, config=NO_AUDIT)["queue"].to_list() == ["uncertain"]


def test_an_item_can_sit_in_several_queues() -> None:
    items = frame(interaction_id=["x"], confidence=[0.5], is_issue=[True], explicit=[0], implicit_label=[1])
    outbox = route(items, config=NO_AUDIT)
    assert outbox.select("interaction_id", "queue").rows() == [("x", "uncertain"), ("x", "suspect"), ("x", "conflict")]


def test_budgets_keep_the_highest_priorities_ties_by_id() -> None:
    items = frame(
        interaction_id=["e", "d", "c", "b", "a"],
        confidence=[0.1, 0.5, 0.3, 0.3, 0.69],
        is_issue=[True] * 5,
        label_quality=[0.5, 0.1, 0.2, 0.3, 0.4],
    )
    config = RoutingConfig(audit_rate=0.0, budgets={"uncertain": 3, "suspect": 2})
    outbox = route(items, config=config)
    assert outbox.filter(queue="uncertain")["interaction_id"].to_list() == ["e", "b", "c"]  # 0.9, then 0.7 by id
    assert outbox.filter(queue="suspect")["interaction_id"].to_list() == ["d", "c"]
    off = route(items, config=RoutingConfig(audit_rate=0.0, budgets={"suspect": 0, "uncertain": None}))
    assert off["queue"].to_list() == ["uncertain"] * 5


def test_already_queued_items_are_not_queued_again_in_that_queue() -> None:
    items = frame(interaction_id=["a", "b"], confidence=[0.2, 0.3], is_issue=[True, False])
    queued = pl.DataFrame({"interaction_id": ["a", "b"], "queue": ["uncertain", "suspect"]})
    outbox = route(items, config=NO_AUDIT, already_queued=queued)
    assert outbox.select("interaction_id", "queue").rows() == [("b", "uncertain"), ("a", "suspect")]
    # a budget counts only what is new
    assert route(items, config=RoutingConfig(audit_rate=0.0, budgets={"uncertain": 1}), already_queued=queued).filter(
        queue="uncertain"
    )["interaction_id"].to_list() == ["b"]


def test_audit_sample_is_deterministic_per_id_and_about_the_rate() -> None:
    ids = [f"interaction-{j}" for j in range(20_000)]
    items = frame(interaction_id=ids)
    config = RoutingConfig(audit_rate=0.05, budgets={"audit": None})
    picked = set(route(items, config=config, seed=3)["interaction_id"])
    assert 0.04 < len(picked) / len(ids) < 0.06
    # the same ids whatever the batch they arrive in or its order
    shuffled = items.sample(fraction=1.0, shuffle=True, seed=1)
    assert set(route(shuffled, config=config, seed=3)["interaction_id"]) == picked
    half = set(route(items.head(10_000), config=config, seed=3)["interaction_id"])
    assert half == {i for i in picked if int(i.split("-")[1]) < 10_000}
    other = set(route(items, config=config, seed=4)["interaction_id"])
    assert len(other & picked) < len(picked) / 2
    outbox = route(items, config=config, seed=3)
    assert set(outbox["reason"]) == {"uniform audit sample"} and set(outbox["priority"]) == {0.5}


def _reference_draw(interaction_id: str, seed: int) -> float:
    """The audit draw's definition, in plain Python: FNV-1a 64 over UTF-8 bytes, seeded, splitmix64 finaliser."""
    mask = 2**64 - 1

    def splitmix64(x: int) -> int:
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    state = 0xCBF29CE484222325 ^ splitmix64(seed % 2**64)
    for byte in interaction_id.encode():
        state = ((state ^ byte) * 0x100000001B3) & mask
    return (splitmix64(state) >> 11) / 2**53


def test_audit_draw_is_fixed_by_its_definition() -> None:
    """The draw must never change with a library upgrade: it is pinned to a definition and to known values."""
    ids = ["interaction-1", "", "é-ünïcode-🙂", "x" * 300, "interaction-2"]
    for seed in (0, 1, -5, 2**40):
        drawn = _uniform_draw(pl.Series(ids), seed)
        assert drawn.tolist() == [_reference_draw(i, seed) for i in ids]
    assert _uniform_draw(pl.Series(["interaction-1", ""]), 0).tolist() == [0.6400292795595044, 0.9576734252420561]
    assert _uniform_draw(pl.Series(["a", "b", "c"]).slice(1, 2), 0).tolist() == [
        _reference_draw("b", 0),
        _reference_draw("c", 0),
    ]


def test_a_binding_audit_budget_does_not_favour_small_ids() -> None:
    items = frame(interaction_id=[f"{j:05d}" for j in range(20_000)])
    outbox = route(items, config=RoutingConfig(audit_rate=0.1, budgets={"audit": 100}))
    kept = sorted(int(i) for i in outbox["interaction_id"])
    assert len(kept) == 100
    assert kept[-1] > 15_000 and kept[0] < 5_000


def test_class_names_for_more_classes() -> None:
    items = frame(explicit=[2, 0], implicit_label=[0, 2])
    config = RoutingConfig(audit_rate=0.0, class_names=("bad", "ok"))
    assert route(items, config=config)["reason"].to_list() == [
        "explicit rating says class 2, implicit signals say bad",
        "explicit rating says bad, implicit signals say class 2",
    ]


def test_empty_items_give_an_empty_outbox() -> None:
    outbox = route(frame(confidence=[0.1]).clear(), config=RoutingConfig())
    assert outbox.is_empty() and outbox.columns == ["interaction_id", "queue", "reason", "priority"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (frame(confidence=[0.5]).drop("is_issue"), r"missing \['is_issue'\]"),
        (
            frame(confidence=[0.5]).drop("explicit"),
            r"both \['explicit', 'implicit_label'\] .* got only \['implicit_label'\]",
        ),
        (frame(confidence=[1.5]), r"expected confidence in \[0, 1\], got values in \[1.5, 1.5\]"),
        (frame(confidence=[0.5], is_issue=["yes"]), r"is_issue boolean.*got \{'is_issue': 'String'\}"),
        (frame(confidence=[0.5], interaction_id=[None]), "every row to have an interaction_id, got nulls"),
        (frame(confidence=[0.5, 0.5, 0.5], interaction_id=["b", "a", "b"]), r"one row per interaction_id, .* \['b'\]"),
    ],
)
def test_route_says_what_it_expected(items: pl.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        route(items, config=NO_AUDIT)


def test_already_queued_is_validated() -> None:
    items = frame(confidence=[0.5])
    with pytest.raises(ValueError, match=r"queues among \[.*\], got \['review'\]"):
        route(items, config=NO_AUDIT, already_queued=pl.DataFrame({"interaction_id": ["i0"], "queue": ["review"]}))
    with pytest.raises(ValueError, match="with interaction_id and queue, got \\['interaction_id'\\]"):
        route(items, config=NO_AUDIT, already_queued=pl.DataFrame({"interaction_id": ["i0"]}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"confidence_threshold": 0.0}, r"confidence_threshold in \(0, 1\], got 0.0"),
        ({"audit_rate": 2}, r"audit_rate in \[0, 1\], got 2"),
        ({"budgets": {"review": 5}}, r"unknown queues \['review'\]"),
        ({"budgets": {"audit": -1}}, "budget of 'audit' to be an integer >= 0 or None, got -1"),
        ({"class_names": ()}, "class_names as non-empty strings"),
    ],
)
def test_config_says_what_it_expected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoutingConfig(**options)  # type: ignore[arg-type]


def test_config_is_frozen_and_keeps_default_budgets() -> None:
    budgets = {"suspect": 5}
    config = RoutingConfig(budgets=budgets)  # type: ignore[arg-type]
    budgets["suspect"] = 50
    assert dict(config.budgets) == {"uncertain": 1000, "suspect": 5, "conflict": 1000, "audit": 500,
                                   "adjudication": 200}
    assert set(config.budgets) == set(QUEUES)
    with pytest.raises(AttributeError):
        config.audit_rate = 0.5  # type: ignore[misc]


def test_human_answers_are_final_only_disagreement_goes_to_adjudication() -> None:
    # every rule would fire on these items, but annotators answered them
    items = frame(
        interaction_id=["agreed", "split", "single", "weak"],
        confidence=[0.5, 0.5, 0.5, 0.5],
        is_issue=[True, True, True, False],
        label_quality=[0.01, 0.01, 0.01, 0.9],
        explicit=[0, 0, 0, -1],
        implicit_label=[1, 1, 1, 1],
        human=[True, True, True, False],
        agreement=[1.0, 0.5, None, None],
    )
    routed = route(items, config=RoutingConfig(audit_rate=1.0))
    assert sorted((r[0], r[1]) for r in routed.iter_rows()) == [
        ("split", "adjudication"), ("weak", "audit"), ("weak", "uncertain"),
    ]
    assert routed.filter(pl.col("queue") == "adjudication").get_column("reason").to_list() == [
        "annotators agree 0.50 < 0.75"
    ]


def test_every_routing_queue_has_an_argilla_dataset() -> None:
    from flywheel_feedback.services.annotation.layout import QUEUES as DATASET_QUEUES

    assert set(QUEUES) <= set(DATASET_QUEUES)
