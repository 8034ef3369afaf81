from __future__ import annotations

import polars as pl
import pytest

from flywheel_feedback.labeling.pii import Engine, find_pii, mask_columns, mask_expr, mask_text
from flywheel_feedback.services.simulator.traffic import PII_SNIPPETS, planted_card

PLANTED = [
    ("write to jane.doe+test@example.co.uk today", "jane.doe+test@example.co.uk", "[EMAIL_1]"),
    ("call +1 415 555 0100 after 5", "+1 415 555 0100", "[PHONE_1]"),
    ("my number is (030) 1234 5678", "1234 5678", "[PHONE_1]"),
    ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "[CARD_1]"),
    ("card 5500-0000-0000-0004", "5500-0000-0000-0004", "[CARD_1]"),
    ("use sk-live-0042abcdefghijklmnopqrstuv please", "sk-live-0042abcdefghijklmnopqrstuv", "[KEY_1]"),
    ("key AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE", "[KEY_1]"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123", "[KEY_1]"),
    ("Authorization: Bearer abc.def-ghi_jkl012345", "abc.def-ghi_jkl012345", "[KEY_1]"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "eyJhbGciOiJIUzI1NiJ9", "[KEY_1]"),
    ("my password: hunter2hunter2", "hunter2hunter2", "[SECRET_1]"),
]


ENGINES: tuple[Engine, ...] = ("presidio", "fast")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("text", "secret", "placeholder"), PLANTED)
def test_planted_pii_is_masked_in_python_and_in_polars(text: str, secret: str, placeholder: str,
                                                       engine: Engine) -> None:
    masked = mask_text(text, engine=engine)
    assert masked is not None and secret not in masked and placeholder in masked
    column = mask_columns(pl.DataFrame({"t": [text]}), ["t"], engine=engine).item()
    assert secret not in column and placeholder in column
    assert pl.DataFrame({"t": [text]}).select(mask_expr(pl.col("t"))).item() == mask_text(text, engine="fast")


@pytest.mark.parametrize("engine", ENGINES)
def test_ordinary_text_is_left_alone(engine: Engine) -> None:
    for text in ["Order #4471 ships in 2 days", "Python 3.11 came out in 2022", "open Settings > Account",
                 "version 2026-11-15 of the model", "it costs 49.99 euros"]:
        assert mask_text(text, engine=engine) == text
        assert mask_columns(pl.DataFrame({"t": [text]}), ["t"], engine=engine).item() == text


def test_the_simulator_plants_only_what_the_masker_finds() -> None:
    for snippet in PII_SNIPPETS:
        text = snippet.format(n=1234, card=planted_card(1234))
        for engine in ENGINES:
            assert find_pii(text, engine=engine), text
            masked = mask_text(text, engine=engine)
            assert masked is not None and not find_pii(masked, engine=engine)


def test_none_stays_none() -> None:
    assert mask_text(None) is None
