"""Masking quality on the synthetic PII set, for both paths, and the bulk path's throughput.

    python bench/pii.py [--rows 200000]

Quality: span-level precision and recall per kind (labeling.pii_eval) of the "presidio" path (Argilla)
and the "fast" path (exports, slices, labels), on the development half (eval.jsonl) and the held-out
half (heldout.jsonl, other seed and templates; bench/pii_data.py writes both). NAME and ADDRESS are
labeled but not detected (no NER model), so they are reported apart and left out of the totals.
Throughput: `mask_series` over distinct rows of two corpora, PII-dense (the eval texts) and
traffic-like (the simulator's prompts, 3% with planted PII), beside the regex masking this replaced
(polars `replace_all` with the old patterns), measured in the same run on the same rows.
Ends with `RESULT pii_recall=<x> pii_precision=<x> bulk_rows_s=<x>` (held-out half; recall and
precision of the presidio path over the detected kinds; rows/s of the fast path on traffic-like rows).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import polars as pl

from flywheel_feedback.labeling.pii import Engine, find_pii_spans, mask_series, mask_text
from flywheel_feedback.labeling.pii_eval import Labeled, Scores
from flywheel_feedback.labeling.pii_recognizers import KINDS
from flywheel_feedback.services.simulator.catalog import TASKS
from flywheel_feedback.services.simulator.traffic import PII_SNIPPETS, planted_card

DATA = Path(__file__).resolve().parent / "data" / "pii"
DETECTED = [k for k in KINDS if k != "SECRET"]  # the set labels no bare passwords
UNDETECTED = ["NAME", "ADDRESS"]
# the masking this replaced (labeling/pii.py before Presidio), as the throughput baseline
OLD_PATTERNS = (
    ("[EMAIL]", r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
    ("[SECRET]", r"\b(?:sk|pk|rk)[-_](?:live|test|proj)?[-_]?[A-Za-z0-9_\-]{12,}"),
    ("[SECRET]", r"\b(?:ghp|gho|ghu|ghs|github_pat|glpat|xox[abpr])[-_][A-Za-z0-9_\-]{10,}"),
    ("[SECRET]", r"\bAKIA[0-9A-Z]{16}\b"),
    ("[SECRET]", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("[SECRET]",
     r"(?i)\b(?:bearer|token|api[_\- ]?key|secret|password)\b(?:\s*[:=]\s*|\s+is\s+|\s+)[A-Za-z0-9_\-.]{8,}"),
    ("[CARD]", r"\b(?:\d[ \-]?){12,18}\d\b"),
    ("[PHONE]", r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){0,3}[ .\-]\d{3,4}\b"),
)


def load(name: str) -> list[dict[str, object]]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def labeled(spans: object) -> list[Labeled]:
    assert isinstance(spans, list)
    return [(int(s["start"]), int(s["end"]), str(s["kind"])) for s in spans]


def score(records: list[dict[str, object]], engine: Engine) -> Scores:
    scores = Scores()
    for r in records:
        text = str(r["text"])
        scores.add(text, labeled(r["spans"]), find_pii_spans(text, engine=engine), labeled(r["negatives"]))
    return scores


def report(name: str, engine: Engine, s: Scores) -> None:
    print(f"\n{name} / {engine}")
    print(f"  {'kind':8} {'gold':>5} {'recall':>7} {'typed':>6} {'masked':>7} {'precision':>9}")
    for kind in [*DETECTED, *UNDETECTED]:
        if not s.gold[kind] and not s.predicted[kind]:
            continue
        typed = s.typed[kind] / s.caught[kind] if s.caught[kind] else float("nan")
        note = "  (not detected: no NER model)" if kind in UNDETECTED else ""
        print(f"  {kind:8} {s.gold[kind]:5d} {s.recall([kind]):7.3f} {typed:6.2f} {s.predicted[kind]:7d} "
              f"{s.precision([kind]):9.3f}{note}")
    print(f"  detected kinds: recall {s.recall(DETECTED):.3f}  precision {s.precision():.3f}")
    if s.false_positives:
        hits = ", ".join(f"{k} {v}" for k, v in s.false_positives.most_common())
        print(f"  false positives by what they hit: {hits}")


def traffic_rows(n: int, *, seed: int) -> list[str]:
    """Distinct prompts shaped like the simulator's, 3% with planted PII."""
    rng = random.Random(seed)
    topics = [t for task in TASKS for t in task.topics]
    words = ["please", "quickly", "again", "today", "kindly", "now", "also", "thanks", "soon", "here"]
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        text = rng.choice(topic.prompts).format(slot=rng.choice(topic.slots))
        # distinct rows without digits (a number would send every row through the validators)
        text += " " + " ".join(words[int(d)] for d in str(i))
        if rng.random() < 0.03:
            k = rng.randrange(10_000)
            text += rng.choice(PII_SNIPPETS).format(n=k, card=planted_card(k))
        rows.append(text)
    return rows


def dense_rows(n: int, records: list[dict[str, object]]) -> list[str]:
    texts = [str(r["text"]) for r in records]
    return [f"{texts[i % len(texts)]} (copy {'abcdefghij'[i // len(texts) % 10]}{i // len(texts)})" for i in range(n)]


def rows_per_s(rows: list[str], mask: str) -> float:
    column = pl.Series("t", rows, dtype=pl.String)
    start = time.perf_counter()
    if mask == "fast":
        mask_series(column)
    else:
        expr = pl.col("t")
        for placeholder, pattern in OLD_PATTERNS:
            expr = expr.str.replace_all(pattern, placeholder)
        column.to_frame().select(expr)
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    halves = {"development": load("eval.jsonl"), "held-out": load("heldout.jsonl")}
    results: dict[tuple[str, Engine], Scores] = {}
    mask_text("warm-up: presidio loads here")
    for name, records in halves.items():
        for engine in ("presidio", "fast"):
            results[name, engine] = score(records, engine)
            report(name, engine, results[name, engine])

    print(f"\nbulk throughput ({args.rows} distinct rows per corpus)")
    bulk = {}
    for corpus, rows in [("traffic-like", traffic_rows(args.rows, seed=3)),
                         ("PII-dense", dense_rows(args.rows // 4, halves["held-out"]))]:
        new, old = rows_per_s(rows, "fast"), rows_per_s(rows, "old")
        bulk[corpus] = new
        print(f"  {corpus:12} fast path {new:10.0f} rows/s   old regex path {old:10.0f} rows/s   ratio {new / old:.2f}")
    sample = dense_rows(1000, halves["held-out"])
    start = time.perf_counter()
    for text in sample:
        mask_text(text, engine="presidio")
    print(f"  presidio path (PII-dense, for comparison) {len(sample) / (time.perf_counter() - start):.0f} rows/s")

    held = results["held-out", "presidio"]
    print(f"RESULT pii_recall={held.recall(DETECTED):.3f} pii_precision={held.precision():.3f} "
          f"bulk_rows_s={bulk['traffic-like']:.0f}")


if __name__ == "__main__":
    main()
