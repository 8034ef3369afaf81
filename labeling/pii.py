"""Masking of personal data and secrets before anything leaves for Argilla or an export.

E-mail addresses, card numbers, phone numbers, API keys and tokens become placeholders such as
`[EMAIL]`. The patterns lean towards masking too much: a false positive costs a word, a miss
leaks a customer's data. Order matters: keys and cards are masked before phone numbers, whose
pattern would otherwise eat their digits.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

# (placeholder, pattern); the patterns use only syntax both Python's re and Rust's regex accept.
PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("[EMAIL]", r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
    # provider keys and bearer tokens: sk-..., pk_live_..., ghp_..., xoxb-..., AKIA..., JWTs
    ("[SECRET]", r"\b(?:sk|pk|rk)[-_](?:live|test|proj)?[-_]?[A-Za-z0-9_\-]{12,}"),
    ("[SECRET]", r"\b(?:ghp|gho|ghu|ghs|github_pat|glpat|xox[abpr])[-_][A-Za-z0-9_\-]{10,}"),
    ("[SECRET]", r"\bAKIA[0-9A-Z]{16}\b"),
    ("[SECRET]", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    (
        "[SECRET]",
        r"(?i)\b(?:bearer|token|api[_\- ]?key|secret|password)\b(?:\s*[:=]\s*|\s+is\s+|\s+)[A-Za-z0-9_\-.]{8,}",
    ),
    ("[CARD]", r"\b(?:\d[ \-]?){12,18}\d\b"),
    # ends in a group of 3-4 digits, so dates (2026-11-15) and prices are not phones
    ("[PHONE]", r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){0,3}[ .\-]\d{3,4}\b"),
)

_COMPILED = tuple((placeholder, re.compile(pattern)) for placeholder, pattern in PATTERNS)
_PHONE_MIN_DIGITS = 7


def mask_text(text: str | None) -> str | None:
    """One string with its personal data and secrets masked."""
    if text is None:
        return None
    for placeholder, pattern in _COMPILED:
        if placeholder == "[PHONE]":
            text = pattern.sub(_mask_phone, text)
        else:
            text = pattern.sub(placeholder, text)
    return text


def mask_expr(expr: pl.Expr) -> pl.Expr:
    """The same masking as a polars expression, for whole columns at once."""
    for placeholder, pattern in PATTERNS:
        # polars has no replace callback, so short phone-shaped runs are masked too (the safe side)
        expr = expr.str.replace_all(pattern, placeholder)
    return expr


def mask_columns(frame: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> pl.DataFrame:
    present = [c for c in columns if c in frame.columns]
    return frame.with_columns([mask_expr(pl.col(c)).alias(c) for c in present])


def find_pii(text: str) -> list[str]:
    """What would be masked in `text` (for tests and audits)."""
    found: list[str] = []
    for placeholder, pattern in _COMPILED:
        for match in pattern.finditer(text):
            if placeholder != "[PHONE]" or _digits(match.group(0)) >= _PHONE_MIN_DIGITS:
                found.append(match.group(0))
    return found


def _mask_phone(match: re.Match[str]) -> str:
    return "[PHONE]" if _digits(match.group(0)) >= _PHONE_MIN_DIGITS else match.group(0)


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)
