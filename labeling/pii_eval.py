"""Span-level precision and recall of masking against labeled spans (bench/pii.py, tests).

A gold span is caught when every letter and digit of it lies inside masked spans, whatever their kind:
a masked value no longer leaks, and a half-masked one (`DE89 [CARD]`) still does. A masked span is
correct when it overlaps a gold span; one that touches none is a false positive (it costs a word).
Kinds are also scored for type: the share of caught gold spans whose placeholder names their kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flywheel_feedback.labeling.pii_recognizers import Span

Labeled = tuple[int, int, str]  # (start, end, kind) of a labeled span; kinds include undetected ones (NAME)


@dataclass
class Scores:
    """Counts per kind; gold kinds for recall, predicted kinds for precision."""

    gold: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    typed: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    false_positives: Counter[str] = field(default_factory=Counter)  # by the hard negative they hit, if any

    def add(self, text: str, gold: Sequence[Labeled], predicted: Sequence[Span],
            negatives: Sequence[Labeled] = ()) -> None:
        """One text: its gold spans and hard negatives as (start, end, kind), and what was masked."""
        for g_start, g_end, g_kind in gold:
            self.gold[g_kind] += 1
            inside = [p for p in predicted if p.start < g_end and g_start < p.end]
            if all(any(p.start <= i < p.end for p in inside) for i in range(g_start, g_end) if text[i].isalnum()):
                self.caught[g_kind] += 1
                self.typed[g_kind] += any(p.kind == g_kind for p in inside)
        for p in predicted:
            self.predicted[p.kind] += 1
            if any(p.start < end and start < p.end for start, end, _ in gold):
                self.correct[p.kind] += 1
            else:
                hit = [kind for start, end, kind in negatives if p.start < end and start < p.end]
                self.false_positives[hit[0] if hit else "other"] += 1

    def recall(self, kinds: Iterable[str] | None = None) -> float:
        chosen = list(self.gold) if kinds is None else list(kinds)
        total = sum(self.gold[k] for k in chosen)
        return sum(self.caught[k] for k in chosen) / total if total else 1.0

    def precision(self, kinds: Iterable[str] | None = None) -> float:
        chosen = list(self.predicted) if kinds is None else list(kinds)
        total = sum(self.predicted[k] for k in chosen)
        return sum(self.correct[k] for k in chosen) / total if total else 1.0
