"""The label model against majority vote on WRENCH YouTube, and its cost on a million rows.

    python bench/labelmodel.py [--data DIR] [--seed 0] [--rows 1000000] [--sweep]

Fits LabelModel on train.json's weak labels only (no gold is used), then scores predict() on valid.json and
test.json against their gold labels, beside majority vote (ties broken at random with the seed) run in the
same process. Then times fit + predict on a synthetic label matrix (--rows x 8 functions) drawn from a known
model. --sweep prints valid accuracy over the min_lift x abstain_weight grid the defaults were chosen from
(chosen on valid, never on test). Times are medians of 3 runs. The last line is
RESULT wrench_youtube_accuracy=<test accuracy> majority_vote=<test accuracy> fit_s=<seconds>.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flywheel_feedback.labeling.label_model import LabelModel, majority_vote

REPO = Path(__file__).resolve().parent.parent

DEFAULT_DATA = REPO / "bench" / "data" / "wrench" / "youtube"
SYNTHETIC_ACCURACY = np.array([0.75, 0.8, 0.85, 0.9, 0.95, 0.8, 0.75, 0.85])
SYNTHETIC_COVERAGE = np.array([0.3, 0.5, 0.2, 0.4, 0.1, 0.3, 0.6, 0.5])


def load_split(data: Path, split: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """WRENCH's format: {id: {"data": {...}, "label": int, "weak_labels": [int, ...]}} -> (L, gold)."""
    items = json.loads((data / f"{split}.json").read_text()).values()
    weak = np.array([item["weak_labels"] for item in items], dtype=np.int64)
    gold = np.array([item["label"] for item in items], dtype=np.int64)
    return weak, gold


def timed(run: Callable[[], Any], repeats: int = 3) -> tuple[Any, float]:
    """The result of the last run and the median wall time in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def accuracy(predicted: NDArray[np.int64], gold: NDArray[np.int64]) -> float:
    return float((predicted == gold).mean())


def synthetic(rows: int, seed: int) -> tuple[NDArray[np.int8], NDArray[np.int64]]:
    """Balanced binary truth; function j fires with its coverage and is then right with its accuracy."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, size=rows)
    fires = rng.random((rows, len(SYNTHETIC_ACCURACY))) < SYNTHETIC_COVERAGE
    right = rng.random((rows, len(SYNTHETIC_ACCURACY))) < SYNTHETIC_ACCURACY
    votes = np.where(right, truth[:, None], 1 - truth[:, None])
    return np.where(fires, votes, -1).astype(np.int8), truth


def sweep(train: NDArray[np.int64], valid: NDArray[np.int64], valid_gold: NDArray[np.int64]) -> None:
    weights = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]
    print("\nvalid accuracy, rows min_lift, columns abstain_weight")
    print("min_lift " + " ".join(f"{w:>6}" for w in weights))
    for lift in [1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 4.0]:
        cells = []
        for weight in weights:
            model = LabelModel(2, min_lift=lift, abstain_weight=weight).fit(train)
            cells.append(f"{accuracy(model.predict(valid), valid_gold):6.3f}")
        print(f"{lift:8} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="WRENCH YouTube directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic label matrix")
    parser.add_argument("--sweep", action="store_true", help="print the hyper-parameter grid on valid")
    args = parser.parse_args()

    train, _ = load_split(args.data, "train")
    splits = {name: load_split(args.data, name) for name in ("valid", "test")}
    model, fit_s = timed(lambda: LabelModel(2, seed=args.seed).fit(train))
    _, mv_s = timed(lambda: majority_vote(train, 2, seed=args.seed))
    ours = {name: accuracy(model.predict(weak), gold) for name, (weak, gold) in splits.items()}
    mv = {name: accuracy(majority_vote(weak, 2, seed=args.seed), gold) for name, (weak, gold) in splits.items()}
    print(f"WRENCH YouTube: fit on {len(train)} train rows x {train.shape[1]} functions, no gold used")
    print(f"{'method':<15} {'valid':>6} {'test':>6}   time on train")
    print(
        f"{'label model':<15} {ours['valid']:6.3f} {ours['test']:6.3f}   {fit_s:.4f} s fit ({model.n_iter_} EM steps)"
    )
    print(f"{'majority vote':<15} {mv['valid']:6.3f} {mv['test']:6.3f}   {mv_s:.4f} s")
    print(f"label model fit / majority vote time: {fit_s / mv_s:.0f}x  ({model.version})")
    print("learned accuracies: " + " ".join(f"{a:.2f}" for a in model.accuracies_))
    print("learned class balance: " + " ".join(f"{p:.3f}" for p in model.class_balance_))

    weak, truth = synthetic(args.rows, args.seed)

    def fit_predict() -> tuple[LabelModel, NDArray[np.int64]]:
        big = LabelModel(2, seed=args.seed).fit(weak)
        return big, big.predict(weak)

    (big, predicted), big_s = timed(fit_predict)
    voted, big_mv_s = timed(lambda: majority_vote(weak, 2, seed=args.seed))
    error = float(np.abs(big.accuracies_ - SYNTHETIC_ACCURACY).max())
    print(f"\nsynthetic {args.rows} rows x {weak.shape[1]} functions drawn from a known model")
    print(
        f"label model fit + predict {big_s:.3f} s, accuracy {accuracy(predicted, truth):.4f}, "
        f"largest error of a learned function accuracy {error:.4f}"
    )
    print(f"majority vote             {big_mv_s:.3f} s, accuracy {accuracy(voted, truth):.4f}")

    if args.sweep:
        sweep(train, *splits["valid"])
    print(f"RESULT wrench_youtube_accuracy={ours['test']:.3f} majority_vote={mv['test']:.3f} fit_s={fit_s:.4f}")


if __name__ == "__main__":
    main()
