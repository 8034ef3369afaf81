"""The bulk path's finder: regex candidates checked by the validators, without Presidio or spaCy.

Exports, slices and the labels table mask millions of texts; most hold nothing. `PREFILTER` is one
regex (valid in both Python's re and Rust's regex, so polars can run it over a whole column) that every
text holding personal data or a secret matches; only those texts reach `find_spans_fast`. Phone numbers
go through `phonenumbers` (the library Presidio uses), cards through Luhn, IBANs through mod-97.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers

from flywheel_feedback.labeling.pii_recognizers import (
    DATE_LIKE,
    IBAN_LENGTHS,
    Span,
    find_secrets,
    iban_ok,
    ip_ok,
    luhn_ok,
    phone_ok,
    ssn_ok,
)

# Regions whose national formats (no +country code) are tried; an international number parses in any.
PHONE_REGIONS: Final = ("US", "GB", "DE", "FR", "IN", "ES")

PREFILTER: Final = (
    r"@"
    r"|\d[\d \-.()/]{5,}\d"  # phones, cards, SSNs, IBANs' digits, IPv4
    r"|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"  # IPv6
    r"|sk-|sk_|pk_|rk_|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|glpat-|xox[a-z]-|AIza|eyJ"
    r"|(?i:bearer)\s+\S{12}"
    # a keyword only with an assignment after it: "I forgot my password" is everyday traffic
    r"|(?i:password|passwd|pwd|passwort|mot de passe|contraseña|secret|api.?key|token)\s*(?:[:=]|is\s|est\s|ist\s|es\s)"
)

# \w is Unicode here: addresses may hold non-ASCII letters (lucía.lópez@...)
_EMAIL: Final = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}")
# 13-19 digits in groups; the leading digit of every major network (Amex 3, Visa 4, MC 2/5, Discover 6)
_CARD: Final = re.compile(r"(?<![\d\-])[2-6]\d{0,3}(?:[ \-]?\d){11,18}(?![\d])")
_IBAN: Final = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?\b")
_SSN: Final = re.compile(r"\b\d{3}[\- .]\d{2}[\- .]\d{4}\b")
_IPV4: Final = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6: Final = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_PHONE_HINT: Final = re.compile(r"\d[\d \-.()/]{5,}\d")
_WINDOW_MARGIN: Final = 4  # a leading "+", "(+" or "00" and one neighbour on each side for the matcher


def find_spans_fast(text: str) -> list[Span]:
    """Everything the bulk path masks in `text`, overlaps not yet resolved."""
    spans = find_secrets(text)
    spans += [Span(*m.span(), "EMAIL") for m in _EMAIL.finditer(text)]
    spans += [Span(*m.span(), "CARD") for m in _CARD.finditer(text) if luhn_ok(m.group(0))]
    spans += [s for m in _IBAN.finditer(text) if (s := _iban_span(text, m)) is not None]
    spans += [Span(*m.span(), "SSN") for m in _SSN.finditer(text) if ssn_ok(m.group(0))]
    spans += [Span(*m.span(), "IP") for m in _IPV4.finditer(text) if ip_ok(m.group(0))]
    spans += [Span(*m.span(), "IP") for m in _IPV6.finditer(text) if m.group(0).count(":") >= 2 and ip_ok(m.group(0))]
    if _PHONE_HINT.search(text):
        spans += _phones(text, taken=spans)
    return spans


def _iban_span(text: str, match: re.Match[str]) -> Span | None:
    """The IBAN in `match`, cut at its country's length: a grouped IBAN may be followed by more capitals."""
    start, end = match.span()
    expected = IBAN_LENGTHS.get(text[start:start + 2])
    if expected is not None:
        seen = 0
        for i in range(start, end):
            if text[i].isalnum():
                seen += 1
                if seen == expected:
                    end = i + 1
                    break
    return Span(start, end, "IBAN") if iban_ok(text[start:end]) else None


def _phones(text: str, *, taken: list[Span]) -> list[Span]:
    """Phone numbers, by phonenumbers' matcher run on the windows around digit runs, not the whole text.

    The matcher is most of the bulk path's time, so runs inside a card, IBAN, SSN, IP or key found
    already (they win the overlap anyway) and runs shaped as dates are not offered to it.
    """
    found: dict[tuple[int, int], Span] = {}
    for hint in _PHONE_HINT.finditer(text):
        if any(s.start <= hint.start() and hint.end() <= s.end for s in taken) or DATE_LIKE.fullmatch(hint.group(0)):
            continue
        offset = max(0, hint.start() - _WINDOW_MARGIN)
        window = text[offset:hint.end() + 1]
        regions = PHONE_REGIONS[:1] if "+" in window[:_WINDOW_MARGIN + 1] else PHONE_REGIONS
        for region in regions:
            # leniency VALID, as Presidio's PhoneRecognizer: the number must exist in the region's plan
            for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
                start, end = offset + match.start, offset + match.end
                if phone_ok(text, start, end):
                    found.setdefault((start, end), Span(start, end, "PHONE"))
    return list(found.values())
