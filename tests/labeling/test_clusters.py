"""Topic clusters over the simulator's prompt templates: alignment with the hidden topics, determinism,
distinct-text prediction, names free of placeholders, validation."""

from __future__ import annotations

import random

import polars as pl
import pytest

from flywheel_feedback.labeling.clusters import fit_topics
from flywheel_feedback.labeling.pii import mask_text
from flywheel_feedback.services.simulator.catalog import NEW_TOPIC, TASKS


def prompts(n: int, *, seed: int = 0, with_new: bool = True) -> pl.DataFrame:
    """`n` prompts drawn from the catalog's templates, with the topic each came from."""
    rng = random.Random(seed)
    topics = [t for task in TASKS for t in task.topics] + ([NEW_TOPIC] if with_new else [])
    rows = []
    for _ in range(n):
        topic = rng.choice(topics)
        text = rng.choice(topic.prompts).format(slot=rng.choice(topic.slots))
        if rng.random() < 0.05:
            n = rng.randrange(9999)
            text += f" Write to me at jane{n % 100}@example.com or pay with 4111 1111 1111 {n:04d}."
        rows.append((mask_text(text, engine="fast"), topic.name))  # as exports and slices mask
    return pl.DataFrame(rows, schema=["text", "topic"], orient="row")


def purity(clusters: pl.Series, topics: pl.Series) -> float:
    frame = pl.DataFrame({"c": clusters, "t": topics})
    best = frame.group_by("c", "t").len().group_by("c").agg(pl.col("len").max())
    return float(best.get_column("len").sum()) / frame.height


def test_clusters_follow_the_hidden_topics() -> None:
    data = prompts(4000)
    model = fit_topics(data.get_column("text"), k=24, seed=0)
    assert purity(model.predict(data.get_column("text")), data.get_column("topic")) > 0.95
    assert model.k == 24 and len(model.names) == 24
    assert sum(model.weights) == pytest.approx(1.0)
    assert list(model.weights) == sorted(model.weights, reverse=True)  # id 0 is the heaviest cluster


def test_same_texts_and_seed_give_the_same_clusters_whatever_the_row_order() -> None:
    data = prompts(2000)
    texts = data.get_column("text")
    a = fit_topics(texts, k=12, seed=3)
    b = fit_topics(texts.sample(fraction=1.0, shuffle=True, seed=1), k=12, seed=3)
    assert a.names == b.names
    assert a.predict(texts).equals(b.predict(texts))


def test_prediction_keeps_row_order_and_handles_nulls_and_unseen_text() -> None:
    data = prompts(500)
    model = fit_topics(data.get_column("text"), k=8, seed=0)
    texts = pl.Series("input", [data["text"][0], None, "something never seen before", data["text"][0]])
    out = model.predict(texts)
    assert out.name == "input" and out.dtype == pl.Int32 and out.len() == 4
    assert out[0] == out[3]
    assert out.null_count() == 0


def test_names_carry_no_placeholders_or_personal_data() -> None:
    data = prompts(3000)
    model = fit_topics(data.get_column("text"), k=24, seed=0)
    joined = " ".join(model.names).lower()
    assert "jane" not in joined and "example" not in joined and "4111" not in joined
    # [CARD_1] is the only source of the word "card" here: the placeholder is not a topic word
    vocabulary = set(model._vectorizer.vocabulary_)
    assert "card" not in vocabulary and not any("jane" in term for term in vocabulary)


def test_weights_steer_the_fit() -> None:
    data = prompts(3000, with_new=False)
    extra = prompts(300, seed=9).filter(pl.col("topic") == NEW_TOPIC.name)
    texts = pl.concat([data.get_column("text"), extra.get_column("text")])
    # the few new-topic rows weigh as much as everything else together: they get clusters of their own
    weights = pl.Series([1.0 / data.height] * data.height + [1.0 / extra.height] * extra.height)
    model = fit_topics(texts, weights=weights, k=12, seed=0)
    new_clusters = set(model.predict(extra.get_column("text")).to_list())
    old_clusters = set(model.predict(data.get_column("text")).to_list())
    assert new_clusters and not new_clusters & old_clusters


def test_fit_on_a_sample_of_many_distinct_texts_is_deterministic() -> None:
    words = ["billing", "refund", "invoice", "git", "merge", "rebase", "password", "reset", "login", "export"]
    texts = pl.Series([f"{words[i % 10]} {words[(i // 10) % 10]} {words[(i // 100) % 10]} q{i}" for i in range(3000)])
    a = fit_topics(texts, k=4, seed=1, max_fit=500)
    b = fit_topics(texts, k=4, seed=1, max_fit=500)
    assert a.fitted_texts == 500 and a.k == 4
    assert a.predict(texts).equals(b.predict(texts))


def test_invalid_input_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="k as an integer >= 2"):
        fit_topics(pl.Series(["a b", "c d"]), k=1)
    with pytest.raises(ValueError, match="at least 2 distinct texts"):
        fit_topics(pl.Series(["same words", "same words"]), k=2)
    with pytest.raises(ValueError, match="one weight per text"):
        fit_topics(pl.Series(["a b", "c d"]), weights=pl.Series([1.0]), k=2)
    with pytest.raises(ValueError, match="weights >= 0"):
        fit_topics(pl.Series(["a b", "c d"]), weights=pl.Series([1.0, -1.0]), k=2)
    with pytest.raises(TypeError, match="polars Series"):
        fit_topics(["a", "b"], k=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no words"):
        fit_topics(pl.Series(["1 2 3", "4 5 6"]), k=2)
