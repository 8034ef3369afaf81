"""Checking interaction tokens (the format and how to make one: flywheel_feedback.client.tokens).

The MAC is checked first, so only a token this gateway's secret made can be called expired or meant for another
interaction; anything else is malformed or forged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final, Literal

from flywheel_feedback.client.tokens import TOKEN_VERSION, token_mac

TokenProblem = Literal["missing", "malformed", "forged", "expired", "other_interaction"]
TOKEN_PROBLEMS: Final[tuple[TokenProblem, ...]] = ("missing", "malformed", "forged", "expired", "other_interaction")
REASONS: Final[dict[TokenProblem, str]] = {
    "missing": "a browser key's feedback needs an interaction_token issued by the product's server",
    "malformed": "the interaction_token is not a v1 token",
    "forged": "the interaction_token's signature does not match (not issued with this gateway's secret)",
    "expired": "the interaction_token has expired",
    "other_interaction": "the interaction_token was issued for another interaction",
}
MAX_TOKEN_CHARS: Final = 2048


def check_token(token: object, *, secret: bytes, interaction_id: str, now: float) -> TokenProblem | None:
    """What is wrong with `token` for feedback about `interaction_id` (None: nothing)."""
    if token is None or token == "":
        return "missing"
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return "malformed"
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[1].isdigit():
        return "malformed"
    if not hmac.compare_digest(token_mac(secret, ".".join(parts[:3])), parts[3]):
        return "forged"
    if int(parts[1]) <= now:
        return "expired"
    try:
        issued_for = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
    except (binascii.Error, ValueError):
        return "malformed"
    return None if hmac.compare_digest(issued_for.encode(), interaction_id.encode()) else "other_interaction"
