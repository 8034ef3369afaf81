"""The cleanlab stage on a million synthetic interactions, against the straightforward way, in one run.

    python bench/cleanlab_stage.py [--rows 1000000] [--baseline-rows ROWS] [--seed 0]

Data: prompts and outputs built from a few hundred templates with slot fillers and drawn with a heavy head
(product traffic repeats itself: the same questions, near-identical answers); a hidden good/bad truth that
depends on the prompt's topic, the output's wording and the behavioural signals (edit ratio, retry, copy,
time to retry, dwell; 5% missing); weak labels = truth with 10% flipped at random.

Stage (labeling.confident): hash each distinct text once, out-of-fold probabilities (5 folds of SGD on capped
stratified samples, predictions scored per distinct text), cleanlab find_label_issues + quality scores. It runs
twice: on the data as drawn, and with a row number appended to every text, so that no text repeats.
Baseline, measured in the same run (by default on all rows; with `--baseline-rows` on a subsample, its time
scaled linearly): TfidfVectorizer over input + output, standardised features (NaN -> mean), 5-fold
cross_val_predict with SGDClassifier(log_loss, defaults), cleanlab on the result. Both report how many
flipped labels they flag: precision = flipped among flagged, against the 10% base rate. The whole run takes
under 3 minutes on a 2-core machine, most of it in the baseline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from flywheel_feedback.labeling.confident import encode_texts, find_issues, out_of_fold_probs

REPO = Path(__file__).resolve().parent.parent

NOISE = 0.10
SYLLABLES = ("ka", "lo", "mi", "re", "tu", "sa", "ne", "po", "vi", "da", "fe", "gu", "ri", "zo", "ba", "te", "lu")


def synthetic(n: int, seed: int) -> tuple[pl.DataFrame, NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """(texts frame with input_text/output_text, features (n, 5) with NaN, noisy labels, which were flipped)."""
    rng = np.random.default_rng(seed)
    vocab = sorted({"".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(6000)})
    words = np.array(vocab)

    def templates(count: int, low: int, high: int) -> list[str]:
        out = []
        for _ in range(count):
            tokens = list(rng.choice(words, size=int(rng.integers(low, high))))
            for slot, position in zip("AB", rng.choice(len(tokens), size=2, replace=False), strict=True):
                tokens[position] = "{" + slot + "}"
            out.append(" ".join(tokens))
        return out

    fillers = rng.choice(words, size=(2, 60))

    def pool(forms: list[str], size: int) -> tuple[list[str], NDArray[np.int64]]:
        form = rng.integers(0, len(forms), size)
        a, b = rng.integers(0, 60, size), rng.integers(0, 60, size)
        return [forms[t].format(A=fillers[0, i], B=fillers[1, j]) for t, i, j in zip(form, a, b, strict=True)], form

    prompts, topic = pool(templates(300, 8, 14), 80_000)
    good, _ = pool(templates(200, 16, 26), 150_000)
    bad, _ = pool(templates(100, 16, 26), 80_000)

    def draw(size: int, a: float) -> NDArray[np.int64]:  # a heavy head over a shuffled pool
        return rng.permutation(size)[np.minimum(rng.zipf(a, n) - 1, size - 1)]

    which_prompt = draw(len(prompts), 1.2)
    truth = (rng.random(n) < rng.uniform(0.35, 0.95, 300)[topic[which_prompt]]).astype(np.int64)
    # 30% of outputs come from the other pool: the wording alone does not give the truth away
    looks_good = np.where(rng.random(n) < 0.3, rng.integers(0, 2, n), truth) == 1
    outputs = pl.select(
        pl.when(pl.Series(looks_good))
        .then(pl.Series(good).gather(draw(len(good), 1.1)))
        .otherwise(pl.Series(bad).gather(draw(len(bad), 1.1)))
    ).to_series()
    texts = pl.DataFrame({"input_text": pl.Series(prompts).gather(which_prompt), "output_text": outputs})

    retried = rng.random(n) < np.where(truth == 1, 0.1, 0.35)
    features = np.column_stack(
        [
            np.clip(rng.beta(2, 5, n) + 0.25 * (1 - truth), 0, 1),  # edit ratio
            retried,
            rng.random(n) < np.where(truth == 1, 0.5, 0.2),  # copied
            np.where(retried, rng.exponential(np.where(truth == 1, 60, 20)), np.nan),  # time to retry
            rng.lognormal(3 + 0.3 * truth, 1),  # dwell
        ]
    ).astype(np.float64)
    features[rng.random(features.shape) < 0.05] = np.nan
    flipped = rng.random(n) < NOISE
    labels = np.where(flipped, 1 - truth, truth).astype(np.int64)
    return texts, features, labels, flipped


def baseline(
    texts: pl.DataFrame, features: NDArray[np.float64], labels: NDArray[np.int64]
) -> tuple[float, float, NDArray[np.bool_]]:
    """(vectorise seconds, total seconds, flagged) for the straightforward stage."""
    start = time.perf_counter()
    joined = texts.select(pl.concat_str("input_text", "output_text", separator="\n")).to_series().to_list()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), dtype=np.float32).fit_transform(joined)
    vectorise = time.perf_counter() - start
    filled = np.where(np.isnan(features), np.nanmean(features, axis=0), features)
    scaled = (filled - filled.mean(axis=0)) / (filled.std(axis=0) + 1e-12)
    design = sp.hstack([tfidf, sp.csr_matrix(scaled)], format="csr")
    model = SGDClassifier(loss="log_loss", random_state=0)
    probs = cross_val_predict(
        model, design, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba"
    )
    flagged = find_issues(labels, probs)["is_issue"].to_numpy()
    return vectorise, time.perf_counter() - start, flagged


def report(name: str, flagged: NDArray[np.bool_], flipped: NDArray[np.bool_]) -> None:
    precision = flipped[flagged].mean() if flagged.any() else 0.0
    recall = flagged[flipped].mean()
    print(
        f"{name}: flagged {flagged.sum()} of {len(flagged)} ({flagged.mean():.1%}); precision {precision:.3f} "
        f"= {precision / NOISE:.1f}x the {NOISE:.0%} base rate; recall {recall:.3f}"
    )


def stage(
    texts: pl.DataFrame, features: NDArray[np.float64], labels: NDArray[np.int64], seed: int
) -> tuple[float, float, float, NDArray[np.bool_]]:
    """(vectorise s, out-of-fold s, find_issues s, flagged) for labeling.confident."""
    start = time.perf_counter()
    encoded = encode_texts(texts)
    vectorised = time.perf_counter()
    probs = out_of_fold_probs(encoded, features, labels, cardinality=2, seed=seed)
    fitted = time.perf_counter()
    flagged = find_issues(labels, probs)["is_issue"].to_numpy()
    done = time.perf_counter()
    return vectorised - start, fitted - vectorised, done - fitted, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=None, help="default: all rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, features, labels, flipped = synthetic(args.rows, args.seed)
    uniques = {name: texts.get_column(name).n_unique() for name in texts.columns}
    print(f"rows {args.rows}: distinct {uniques}, distinct pairs {texts.n_unique()}, label noise {flipped.mean():.3f}")

    vectorise, out_of_fold, issues, flagged = stage(texts, features, labels, args.seed)
    total = vectorise + out_of_fold + issues
    print(
        f"stage: vectorise {vectorise:.2f} s, out-of-fold {out_of_fold:.2f} s, find_issues {issues:.2f} s, "
        f"total {total:.2f} s"
    )
    report("stage", flagged, flipped)

    # Hashing follows distinct texts, not rows: the same stage when no text ever repeats (a row number appended)
    numbered = texts.with_columns(
        pl.col(name) + " n" + pl.int_range(pl.len()).cast(pl.String) for name in texts.columns
    )
    vectorise_d, out_of_fold_d, issues_d, flagged_d = stage(numbered, features, labels, args.seed)
    print(
        f"stage, every text distinct: vectorise {vectorise_d:.2f} s, out-of-fold {out_of_fold_d:.2f} s, "
        f"find_issues {issues_d:.2f} s, total {vectorise_d + out_of_fold_d + issues_d:.2f} s"
    )
    report("stage, every text distinct", flagged_d, flipped)

    rows = args.rows if args.baseline_rows is None else min(args.baseline_rows, args.rows)
    sub = np.sort(np.random.default_rng(args.seed).choice(args.rows, size=rows, replace=False))
    base_vectorise, base_s, base_flagged = baseline(texts[sub], features[sub], labels[sub])
    scaled = base_s * args.rows / rows
    print(
        f"baseline (TF-IDF + 5-fold SGD) on {rows} rows: vectorise {base_vectorise:.2f} s, total {base_s:.2f} s"
        + ("" if rows == args.rows else f", scaled to {args.rows} rows: {scaled:.1f} s")
    )
    report("baseline", base_flagged, flipped[sub])
    print(f"speed-up vs baseline: {scaled / total:.1f}x")
    print(f"RESULT cleanlab_stage_s={total:.2f} rows={args.rows}")


if __name__ == "__main__":
    main()
