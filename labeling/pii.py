"""Masking of personal data and secrets before anything leaves for Argilla or an export.

E-mail addresses, phone numbers, card numbers, IBANs, US SSNs, IP addresses, API keys and tokens, and
values assigned to passwords become typed, numbered placeholders: `[EMAIL_1]`, `[PHONE_2]`, `[KEY_1]`.
Within a record the same value always gets the same placeholder and different values different numbers,
so a reader still sees "the customer wrote to [EMAIL_1] twice and once to [EMAIL_2]". Numbers restart
in every record (an Argilla record's fields share them; on the bulk path, each text is its own record),
so a placeholder never links two records.

Two engines find what to mask:
- "presidio" (the Argilla path, where people read the text): Presidio's analyzer, see `labeling.pii_presidio`.
- "fast" (exports, slices, the labels table): `labeling.pii_fast`, the same validators without Presidio;
  polars runs a prefilter over whole columns and only matching distinct texts reach Python.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import polars as pl

from flywheel_feedback.labeling.pii_fast import PREFILTER, find_spans_fast
from flywheel_feedback.labeling.pii_recognizers import PRIORITY, Kind, Span

Engine = Literal["presidio", "fast"]
_PREFILTER = re.compile(PREFILTER)


class Placeholders:
    """One record's numbering: the same (kind, value) → the same placeholder."""

    def __init__(self) -> None:
        self._assigned: dict[tuple[Kind, str], str] = {}
        self._count: Counter[Kind] = Counter()

    def __call__(self, kind: Kind, value: str) -> str:
        key = (kind, _identity(kind, value))
        if key not in self._assigned:
            self._count[kind] += 1
            self._assigned[key] = f"[{kind}_{self._count[kind]}]"
        return self._assigned[key]


def _identity(kind: Kind, value: str) -> str:
    """What makes two findings the same value: "4111 1111 1111 1111" is "4111-1111-1111-1111"."""
    if kind in ("PHONE", "CARD", "SSN"):
        return ("+" if value.lstrip().startswith("+") else "") + "".join(ch for ch in value if ch.isdigit())
    if kind == "IBAN":
        return "".join(ch for ch in value if ch.isalnum()).upper()
    if kind in ("EMAIL", "IP"):
        return value.lower()
    return value


def resolve(spans: Sequence[Span]) -> list[Span]:
    """Non-overlapping spans in text order: the more specific kind wins an overlap, then the longer span."""
    chosen: list[Span] = []
    for span in sorted(set(spans), key=lambda s: (PRIORITY[s.kind], s.start - s.end, s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen)


def find_pii_spans(text: str, *, engine: Engine = "presidio") -> list[Span]:
    """What would be masked in `text`, as resolved spans."""
    if engine == "presidio":
        from flywheel_feedback.labeling.pii_presidio import find_spans_full

        return resolve(find_spans_full(text))
    # the same gate as mask_series', so what is measured on one text is what a column gets
    return resolve(find_spans_fast(text)) if _PREFILTER.search(text) else []


def find_pii(text: str, *, engine: Engine = "presidio") -> list[str]:
    """The values that would be masked in `text` (for tests and audits)."""
    return [text[s.start:s.end] for s in find_pii_spans(text, engine=engine)]


def mask_text(text: str | None, *, engine: Engine = "presidio", placeholders: Placeholders | None = None) -> str | None:
    """One string with its personal data and secrets masked; pass `placeholders` to share a record's numbering."""
    if text is None:
        return None
    numbering = placeholders if placeholders is not None else Placeholders()
    spans = find_pii_spans(text, engine=engine)
    if not spans:
        return text
    if engine == "presidio":
        from flywheel_feedback.labeling.pii_presidio import anonymize

        for span in spans:  # numbered in text order here; the anonymizer replaces from the end
            numbering(span.kind, text[span.start:span.end])
        return anonymize(text, spans, numbering)
    parts, last = [], 0
    for span in spans:
        parts += [text[last:span.start], numbering(span.kind, text[span.start:span.end])]
        last = span.end
    parts.append(text[last:])
    return "".join(parts)


def mask_series(series: pl.Series) -> pl.Series:
    """A string column masked on the fast path: each distinct text that passes the prefilter, once."""
    column = series.cast(pl.String)
    flagged = column.str.contains(PREFILTER).fill_null(False)
    candidates = column.filter(flagged).unique()
    if candidates.is_empty():
        return column
    masked = pl.Series([mask_text(t, engine="fast") for t in candidates.to_list()], dtype=pl.String)
    replaced = column.replace_strict(candidates, masked, default=column, return_dtype=pl.String)
    return replaced.alias(series.name)


def mask_expr(expr: pl.Expr) -> pl.Expr:
    """The fast path as a polars expression, for whole columns at once."""
    return expr.map_batches(mask_series, return_dtype=pl.String)


def mask_columns(frame: pl.DataFrame, columns: Sequence[str], *, engine: Engine = "presidio") -> pl.DataFrame:
    """`frame` with the listed columns masked. With "presidio", a row is a record: its fields share numbering."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return frame
    if engine == "fast":
        return frame.with_columns(mask_series(frame.get_column(c)).alias(c) for c in present)
    return mask_rows(frame, dict.fromkeys(present, mask_field))


RecordMasker = Callable[[str | None, Placeholders], str | None]


def mask_rows(frame: pl.DataFrame, maskers: Mapping[str, RecordMasker]) -> pl.DataFrame:
    """`frame` with each column of `maskers` masked by its masker, a row being one record: its columns share one
    numbering, assigned in the order of `maskers`."""
    names = list(maskers)
    masked: dict[str, list[str | None]] = {c: [] for c in names}
    for row in frame.select(pl.col(c).cast(pl.String) for c in names).iter_rows():
        numbering = Placeholders()
        for name, value in zip(names, row, strict=True):
            masked[name].append(maskers[name](value, numbering))
    return frame.with_columns(pl.Series(c, masked[c], dtype=pl.String) for c in names)


def mask_field(text: str | None, numbering: Placeholders) -> str | None:
    """A record's text field on Presidio's path, with the record's numbering (a `RecordMasker`)."""
    return mask_text(text, engine="presidio", placeholders=numbering)
