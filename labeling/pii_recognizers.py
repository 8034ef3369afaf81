"""What counts as personal data or a secret, as patterns and checksums shared by both masking paths.

Pure code, no Presidio import: the bulk path (`labeling.pii_fast`) uses these directly, the full path
(`labeling.pii_presidio`) wraps the secret patterns in a Presidio recognizer next to Presidio's own. A
pattern only proposes a candidate; the validators (Luhn, IBAN mod-97, SSN ranges, `ipaddress`) decide,
because a digit pattern alone cannot tell a card from an order number.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "KEY", "SECRET"]
KINDS: Final[tuple[Kind, ...]] = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "KEY", "SECRET")
# When two findings overlap, the more specific kind wins: a key's digits are not a phone, an IBAN's
# digits are not a card, an SSN is not a phone number.
PRIORITY: Final[dict[Kind, int]] = {
    "KEY": 0, "SECRET": 1, "EMAIL": 2, "IBAN": 3, "CARD": 4, "SSN": 5, "IP": 6, "PHONE": 7,
}


@dataclass(frozen=True, order=True)
class Span:
    """`text[start:end]` is personal data or a secret of `kind`."""

    start: int
    end: int
    kind: Kind


@dataclass(frozen=True)
class SecretPattern:
    """A provider's key format. `group` is the part to mask (the value after a `Bearer ` or `password:`)."""

    name: str
    kind: Kind
    pattern: re.Pattern[str]
    group: int = 0


def _p(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


SECRET_PATTERNS: Final[tuple[SecretPattern, ...]] = (
    # Anthropic before OpenAI: both start with sk-
    SecretPattern("anthropic", "KEY", _p(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    # OpenAI: sk-<48>, sk-proj-..., sk-svcacct-...; also catches sk-live-... keys of smaller providers
    SecretPattern("openai", "KEY", _p(r"\bsk-[A-Za-z0-9_\-]{20,}")),
    SecretPattern("stripe", "KEY", _p(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}")),
    SecretPattern("aws_access_key_id", "KEY", _p(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    SecretPattern("github", "KEY", _p(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}")),
    SecretPattern("github_fine_grained", "KEY", _p(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    SecretPattern("gitlab", "KEY", _p(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    SecretPattern("slack", "KEY", _p(r"\bxox[abposre]-[A-Za-z0-9\-]{10,}")),
    SecretPattern("google", "KEY", _p(r"\bAIza[0-9A-Za-z_\-]{35}")),
    SecretPattern("jwt", "KEY", _p(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
    # the token after "Bearer", whatever its format (opaque tokens have none)
    SecretPattern("bearer", "KEY", _p(r"(?i)\bbearer\s+([A-Za-z0-9_\-.~+/]{12,}=*)"), group=1),
    # a value assigned to something called a password or secret; it must hold a digit, so prose such as
    # "the token is expiring" is left alone
    SecretPattern(
        "assignment",
        "SECRET",
        _p(r"(?i)\b(?:password|passwd|pwd|passwort|mot de passe|contraseña|secret|api[_\- ]?key|token)"
           r"\s*(?:[:=]|\bis\b|\best\b|\bist\b|\bes\b)\s*[\"']?((?=[^\s\"']*\d)[^\s\"']{8,})"),
        group=1,
    ),
    # nine digits are an SSN only when said so; Presidio scores bare nine-digit runs near zero
    SecretPattern("ssn_context", "SSN", _p(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)[\s:#]*(\d{9})\b"),
                  group=1),
    # card shapes Presidio's card pattern does not take: Amex grouped 4-6-5, Mastercard's 2221-2720
    # series; Luhn still decides
    SecretPattern("amex_grouped", "CARD", _p(r"\b3[47]\d{2}[ \-]\d{6}[ \-]\d{5}\b")),
    SecretPattern("mastercard_2", "CARD", _p(r"\b2[2-7]\d{2}(?:[ \-]?\d{4}){3}\b")),
)


def find_secrets(text: str) -> list[Span]:
    """Keys, tokens, passwords, context-marked SSNs and grouped Amex numbers in `text`."""
    found = []
    for spec in SECRET_PATTERNS:
        for match in spec.pattern.finditer(text):
            start, end = match.span(spec.group)
            if spec.name == "mastercard_2" and not 2221 <= int(text[start:start + 4]) <= 2720:
                continue
            if spec.kind == "CARD" and not luhn_ok(text[start:end]):
                continue
            if spec.kind == "SSN" and not ssn_ok(text[start:end]):
                continue
            found.append(Span(start, end, spec.kind))
    return found


# shapes phonenumbers accepts in some region that people mean otherwise: 02.12.2026, 2026-11-15
DATE_LIKE: Final = re.compile(r"\d{1,2}[./\-]\d{1,2}[./\-](?:\d{2}|\d{4})|\d{4}-\d{2}-\d{2}")


def phone_ok(text: str, start: int, end: int) -> bool:
    """Whether a number phonenumbers matched at text[start:end] reads as a phone number.

    Not when it is glued to an identifier (INV-2026-004817, ORD/0480478: a letter or digit, maybe
    through a dash, slash or underscore, right before it) or when it reads as a date.
    """
    before = text[max(0, start - 2):start]
    if before[-1:].isalnum() or (len(before) == 2 and before[1] in "-/_#" and before[0].isalnum()):
        return False
    return not DATE_LIKE.fullmatch(text[start:end])


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_ok(text: str) -> bool:
    """The Luhn check digit of a card number (separators ignored)."""
    digits = digits_of(text)
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# IBAN lengths of the countries our traffic comes from; an unknown country is judged on mod-97 alone
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
    "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24,
}


def iban_ok(text: str) -> bool:
    """ISO 13616: the country's length and the mod-97 check digits."""
    compact = re.sub(r"[\s\-]", "", text).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# numbers the SSA published or used in advertising; they look valid and are not anyone's
_SSN_FAKE: Final = frozenset({"078051120", "219099999", "123456789", "111111111", "987654320"})


def ssn_ok(text: str) -> bool:
    """A US SSN the SSA could have issued: area 001-899 except 666, group 01-99, serial 0001-9999."""
    digits = digits_of(text)
    if len(digits) != 9 or digits in _SSN_FAKE or len(set(digits)) == 1:
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


def ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
