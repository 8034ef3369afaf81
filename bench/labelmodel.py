"""The label model against majority vote and Snorkel on the WRENCH-format suite, and its cost on a million rows.

    python bench/labelmodel.py [--data DIR] [--seed 0] [--rows 1000000] [--sweep]
        [--snorkel-python PY] [--write-snorkel]

For every dataset under bench/data/wrench: fit LabelModel on train's weak labels (no gold; `chemprot` has no train
split here, so it is fitted on valid's weak labels), score predict() on test with the WRENCH metric (F1 of
the positive class for sms, youtube uses accuracy as in WRENCH), beside majority vote (ties at random with
the seed). Class-share gap: the largest difference between our predicted class shares and majority vote's.
Then the same with 5% of train's items given their gold label.

Snorkel's LabelModel (not a project dependency) runs in a child process with a Python that has it, given by
--snorkel-python or FLYWHEEL_SNORKEL_PYTHON; bench/snorkel_labelmodel.py says how to make that venv and which
settings it uses (n_epochs=500, lr=0.01, seed=0, fit on the same split, scored here with the same metric).
--write-snorkel stores the figures in bench/data/wrench/snorkel_measured.json (with the versions and settings
and a hash of each dataset's matrices); without a Snorkel Python the bench prints the stored figures of the
datasets whose matrices still match ('?' for a dataset not measured or changed since).

Then fit + predict on a synthetic label matrix (--rows x 8 functions).
--sweep prints mean valid metric over a grid of options (the defaults were chosen on valid, never on test).
The last line is
RESULT suite_mean=<x> majority_vote_mean=<x> worst_gap_to_mv=<x> youtube=<x> fit_1m_s=<s>.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flywheel_feedback.labeling.label_model import LabelModel, majority_vote

REPO = Path(__file__).resolve().parent.parent

DEFAULT_DATA = REPO / "bench" / "data" / "wrench"
SYNTHETIC_ACCURACY = np.array([0.75, 0.8, 0.85, 0.9, 0.95, 0.8, 0.75, 0.85])
SYNTHETIC_COVERAGE = np.array([0.3, 0.5, 0.2, 0.4, 0.1, 0.3, 0.6, 0.5])
SNORKEL_SCRIPT = REPO / "bench" / "snorkel_labelmodel.py"
SNORKEL_FILE = "snorkel_measured.json"
SNORKEL_SETTINGS = {"n_epochs": 500, "lr": 0.01, "seed": 0}


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


F1_SETS = {"sms", "spouse", "cdr", "census", "commercial", "tennis", "basketball"}  # WRENCH scores these by F1


def wrench_metric(name: str, predicted: NDArray[np.int64], gold: NDArray[np.int64]) -> float:
    """WRENCH's metric: F1 of class 1 for the binary relation and spam sets it scores so, accuracy otherwise."""
    if name not in F1_SETS:
        return accuracy(predicted, gold)
    tp = int(((predicted == 1) & (gold == 1)).sum())
    wrong = int((predicted != gold).sum())
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0


def shares(predicted: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    return np.bincount(predicted, minlength=k) / max(len(predicted), 1)


def suite(data: Path) -> Suite:
    """(name, k, fit L, fit gold, test L, test gold) for every dataset folder under `data`."""
    sets = []
    for folder in sorted(p for p in data.iterdir() if (p / "test.json").exists()):
        k = len(json.loads((folder / "label.json").read_text()))
        fit_split = "train" if (folder / "train.json").exists() else "valid"
        sets.append((folder.name, k, *load_split(folder, fit_split), *load_split(folder, "test")))
    return sets


def gold_subset(gold: NDArray[np.int64], share: float, seed: int) -> NDArray[np.int64]:
    """`gold` with all but a random `share` of the items set to -1 (unknown)."""
    keep = np.random.default_rng(seed).random(len(gold)) < share
    return np.where(keep, gold, -1)


Suite = list[tuple[str, int, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]]


def matrices_hash(fit: NDArray[np.int64], test: NDArray[np.int64]) -> str:
    """Names the matrices a Snorkel figure was measured on, so a stale figure is not printed as current."""
    digest = hashlib.sha256()
    for matrix in (fit, test):
        digest.update(repr(matrix.shape).encode())
        digest.update(np.ascontiguousarray(matrix, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def measure_snorkel(python: str, sets: Suite) -> dict[str, Any]:
    """Snorkel's LabelModel on every dataset, in a child process run by `python` (see snorkel_labelmodel.py):
    {"note", "versions", "settings", "figures": {name: metric}, "matrices": {name: hash}}."""
    request = {
        "settings": SNORKEL_SETTINGS,
        "sets": [{"name": n, "cardinality": k, "fit": f.tolist(), "test": t.tolist()} for n, k, f, _, t, _ in sets],
    }
    done = subprocess.run(
        [python, str(SNORKEL_SCRIPT)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"Snorkel run with {python} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    figures = {}
    for name, _, _, _, _, test_gold in sets:
        predicted = np.asarray(answer["predictions"][name], dtype=np.int64)
        figures[name] = round(wrench_metric(name, predicted, test_gold), 4)
    return {
        "note": "Snorkel's LabelModel measured by bench/labelmodel.py --write-snorkel (bench/snorkel_labelmodel.py):"
        " fit on the same split as ours (train's weak labels, chemprot: valid's; no gold, no class balance given),"
        " predict(tie_break_policy='random') on test, scored with the WRENCH metric; CPU.",
        "versions": answer["versions"],
        "settings": {**SNORKEL_SETTINGS, "optimizer": "sgd (default)", "l2": 0.0, "prec_init": 0.7},
        "figures": figures,
        "matrices": {name: matrices_hash(fit, test) for name, _, fit, _, test, _ in sets},
    }


def stored_snorkel(data: Path, sets: Suite) -> dict[str, float]:
    """The stored Snorkel figures of the datasets whose matrices are those they were measured on."""
    path = data / SNORKEL_FILE
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    current = {name: matrices_hash(fit, test) for name, _, fit, _, test, _ in sets}
    return {n: float(x) for n, x in stored["figures"].items() if stored["matrices"].get(n) == current.get(n)}


def sweep(data: Path) -> None:
    """Mean valid metric (fit on train's weak labels, scored on valid) over a grid; chemprot is fitted on valid."""
    sets = []
    for folder in sorted(p for p in data.iterdir() if (p / "valid.json").exists()):
        k = len(json.loads((folder / "label.json").read_text()))
        fit_split = "train" if (folder / "train.json").exists() else "valid"
        sets.append((folder.name, k, load_split(folder, fit_split)[0], *load_split(folder, "valid")))
    mv = [wrench_metric(n, majority_vote(v, k), g) for n, k, _, v, g in sets]
    print(f"\nvalid, majority vote mean {statistics.mean(mv):.3f}")
    for strength in [0.0, 0.25, 1.0]:
        for reference in [5, 10, 1000]:
            cells = []
            for name, k, train, valid, gold in sets:
                model = LabelModel(k, balance_strength=strength, abstain_reference=reference).fit(train)
                cells.append(wrench_metric(name, model.predict(valid), gold))
            gaps = min(c - m for c, m in zip(cells, mv, strict=True))
            options = f"balance_strength={strength} abstain_reference={reference}"
            print(f"{options}: mean {statistics.mean(cells):.3f}, worst gap to MV {gaps:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of WRENCH-format datasets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic label matrix")
    parser.add_argument("--sweep", action="store_true", help="print the option grid on valid")
    parser.add_argument(
        "--snorkel-python",
        default=os.environ.get("FLYWHEEL_SNORKEL_PYTHON"),
        help="a Python with snorkel installed (default: $FLYWHEEL_SNORKEL_PYTHON); without it the stored figures",
    )
    parser.add_argument(
        "--write-snorkel", action="store_true", help=f"store the measured Snorkel figures in {SNORKEL_FILE}"
    )
    args = parser.parse_args()

    sets = suite(args.data)
    if args.snorkel_python:
        measured = measure_snorkel(args.snorkel_python, sets)
        print(f"Snorkel measured now with {args.snorkel_python}: {measured['versions']}", file=sys.stderr)
        if args.write_snorkel:
            (args.data / SNORKEL_FILE).write_text(json.dumps(measured, indent=2) + "\n")
        snorkel = measured["figures"]
    elif args.write_snorkel:
        raise SystemExit("--write-snorkel needs --snorkel-python or FLYWHEEL_SNORKEL_PYTHON")
    else:
        snorkel = stored_snorkel(args.data, sets)
    print(
        f"{'dataset':<10} {'k':>2} {'metric':<8} {'ours':>6} {'MV':>6} {'snorkel':>7} {'gap':>7} {'share gap':>9} "
        f"{'ours 5% gold':>12}  fallback"
    )
    rows = []
    for name, k, train, train_gold, test, test_gold in sets:
        model = LabelModel(k, seed=args.seed).fit(train)
        ours_pred = model.predict(test)
        mv_pred = majority_vote(test, k, seed=args.seed)
        ours, mv = wrench_metric(name, ours_pred, test_gold), wrench_metric(name, mv_pred, test_gold)
        share_gap = float(np.abs(shares(ours_pred, k) - shares(mv_pred, k)).max())
        helped = LabelModel(k, seed=args.seed).fit(train, gold=gold_subset(train_gold, 0.05, args.seed))
        with_gold = wrench_metric(name, helped.predict(test), test_gold)
        reported = snorkel.get(name)
        rows.append((name, ours, mv, with_gold))
        print(
            f"{name:<10} {k:>2} {'F1' if name in F1_SETS else 'accuracy':<8} {ours:6.3f} {mv:6.3f} "
            f"{'?' if reported is None else f'{reported:.3f}':>7} {ours - mv:+7.3f} {share_gap:9.3f} "
            f"{with_gold:12.3f}  "
            f"{model.fallback_ or '-'}"
        )
    suite_mean = statistics.mean(r[1] for r in rows)
    mv_mean = statistics.mean(r[2] for r in rows)
    gold_mean = statistics.mean(r[3] for r in rows)
    worst = min(r[1] - r[2] for r in rows)
    youtube = next(r[1] for r in rows if r[0] == "youtube")
    print(f"suite mean {suite_mean:.3f}, majority vote {mv_mean:.3f}, with 5% gold {gold_mean:.3f}")
    if all(r[0] in snorkel for r in rows):
        print(f"Snorkel mean {statistics.mean(snorkel[r[0]] for r in rows):.3f}")
    else:
        missing = ", ".join(r[0] for r in rows if r[0] not in snorkel)
        print(f"Snorkel mean: not measured on {missing} (run with --snorkel-python)")

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
        f"largest error of a learned function accuracy {error:.4f}, fallback {big.fallback_ or '-'}"
    )
    print(f"majority vote             {big_mv_s:.3f} s, accuracy {accuracy(voted, truth):.4f}")

    if args.sweep:
        sweep(args.data)
    print(
        f"RESULT suite_mean={suite_mean:.3f} majority_vote_mean={mv_mean:.3f} worst_gap_to_mv={worst:+.3f} "
        f"youtube={youtube:.3f} fit_1m_s={big_s:.3f}"
    )


if __name__ == "__main__":
    main()
