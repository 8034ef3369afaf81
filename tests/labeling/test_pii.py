from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.labeling.pii import Engine, find_pii, find_pii_spans, mask_columns, mask_expr, mask_text
from flywheel_feedback.labeling.pii_eval import Scores
from flywheel_feedback.labeling.pii_presidio import analyzer
from flywheel_feedback.labeling.pii_recognizers import KINDS
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


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("text", "masked"), [
    # what the regex masking this replaced got wrong
    ("call 4155550192 tonight", "call [PHONE_1] tonight"),
    ("ruf +49 30 901820 an", "ruf [PHONE_1] an"),
    ("IBAN DE89 3704 0044 0532 0130 00, danke", "IBAN [IBAN_1], danke"),
    ("IBAN DE89370400440532013000", "IBAN [IBAN_1]"),
    ("my SSN is 536-22-4187", "my SSN is [SSN_1]"),
    ("card 4111 1111 1111 1111, not 4111 1111 1111 1112", "card [CARD_1], not 4111 1111 1111 1112"),
    ("invoice INV-2026-004817 from 02.12.2026", "invoice INV-2026-004817 from 02.12.2026"),
    ("from 192.168.1.20 and 2001:db8::8a2e:370:7334", "from [IP_1] and [IP_2]"),
    ("keys sk-ant-api03-abcdefghijklmnopqrstuvwxyz and AIzaSyA1234567890abcdefghijklmnopqrstuv",
     "keys [KEY_1] and [KEY_2]"),
])
def test_the_cases_the_old_masking_got_wrong(text: str, masked: str, engine: Engine) -> None:
    assert mask_text(text, engine=engine) == masked


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_value_gets_the_same_placeholder_within_a_record(engine: Engine) -> None:
    text = "write to Jane@Example.com, then jane@example.com, not bob@example.org; card 4111-1111-1111-1111"
    assert mask_text(text + " or 4111 1111 1111 1111", engine=engine) == (
        "write to [EMAIL_1], then [EMAIL_1], not [EMAIL_2]; card [CARD_1] or [CARD_1]"
    )
    frame = pl.DataFrame({"a": ["mail a@example.com", "mail c@example.com"],
                          "b": ["b@example.com or a@example.com", "c@example.com"]})
    out = mask_columns(frame, ["a", "b"], engine=engine)
    if engine == "presidio":  # an Argilla record's fields share the numbering; the next record starts again
        assert out.rows() == [("mail [EMAIL_1]", "[EMAIL_2] or [EMAIL_1]"), ("mail [EMAIL_1]", "[EMAIL_1]")]
    else:  # the bulk path numbers within each text
        assert out.rows() == [("mail [EMAIL_1]", "[EMAIL_1] or [EMAIL_2]"), ("mail [EMAIL_1]", "[EMAIL_1]")]


def heldout() -> list[dict[str, Any]]:
    path = Path(__file__).resolve().parents[2] / "bench" / "data" / "pii" / "heldout.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("engine", "min_recall", "min_precision"), [("presidio", 0.95, 0.9), ("fast", 0.9, 0.9)])
def test_both_paths_meet_their_floors_on_the_held_out_set(engine: Engine, min_recall: float,
                                                          min_precision: float) -> None:
    scores = Scores()
    for r in heldout():
        def spans(key: str, r: dict[str, Any] = r) -> list[tuple[int, int, str]]:
            return [(s["start"], s["end"], s["kind"]) for s in r[key]]
        scores.add(r["text"], spans("spans"), find_pii_spans(r["text"], engine=engine), spans("negatives"))
    detected = [k for k in KINDS if k != "SECRET"]
    assert all(scores.gold[k] >= 50 for k in detected), scores.gold  # every kind is really measured
    assert scores.recall(detected) >= min_recall and scores.precision() >= min_precision
    assert min(scores.recall([k]) for k in detected) >= 0.85, {k: scores.recall([k]) for k in detected}


def test_tldextract_never_fetches_the_suffix_list(monkeypatch: pytest.MonkeyPatch) -> None:
    import tldextract.tldextract

    analyzer()  # configures tldextract before Presidio's e-mail recognizer uses it
    extractor = tldextract.tldextract.TLD_EXTRACTOR
    assert extractor.suffix_list_urls == () and extractor.fallback_to_snapshot

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tldextract tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert mask_text("mail ops@example.co.uk", engine="presidio") == "mail [EMAIL_1]"
    assert tldextract.extract("ops.example.co.uk").suffix == "co.uk"
