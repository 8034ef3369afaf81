"""One corpus of documents through capture's validation and through ajv: the same verdict on each.

The corpus (corpus.json) holds each document as a JSON value (`doc`) or, where the exact spelling matters
(`4.0`, escapes, invalid JSON), as text (`text`). Both sides get the same bytes: ajv runs under node in
tools/schemas-node (installed from its lock file on first use), against the committed schemas.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from flywheel_feedback.schemas import node
from flywheel_feedback.schemas.events import EVENT_TYPES
from flywheel_feedback.schemas.generate import TYPESCRIPT_PATH, typescript
from flywheel_feedback.services.capture.validate import Invalid, check_message
from flywheel_feedback.services.settings import CaptureSettings

CORPUS = Path(__file__).parent / "corpus.json"
MAX_BYTES: int = CaptureSettings.model_fields["max_event_bytes"].default


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return cases


def _text(case: dict[str, Any]) -> str:
    return case["text"] if "text" in case else json.dumps(case["doc"])


@cache
def _ajv_verdicts() -> list[dict[str, Any]]:
    try:
        out = node.run("validate.mjs", json.dumps([_text(c) for c in _cases()]))
    except node.NodeUnavailableError as e:
        pytest.fail(f"{e}: the agreement tests need node and npm (Debian: nodejs, npm)")
    verdicts: list[dict[str, Any]] = json.loads(out)
    return verdicts


def test_the_corpus_has_both_kinds_and_every_event_type() -> None:
    cases = _cases()
    assert len(cases) >= 80
    assert len({c["name"] for c in cases}) == len(cases)
    assert {True, False} == {c["valid"] for c in cases}
    valid_types = {c["doc"]["type"] for c in cases if c["valid"] and "doc" in c}
    assert set(EVENT_TYPES) <= valid_types


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_capture_gives_the_expected_verdict(case: dict[str, Any]) -> None:
    verdict = check_message(_text(case).encode("utf-8"), max_bytes=MAX_BYTES)
    assert isinstance(verdict, bytes) == case["valid"], verdict


def test_ajv_gives_capture_s_verdict_on_every_document() -> None:
    cases, verdicts = _cases(), _ajv_verdicts()
    assert len(verdicts) == len(cases)
    differ = []
    for case, ajv in zip(cases, verdicts, strict=True):
        capture = check_message(_text(case).encode("utf-8"), max_bytes=MAX_BYTES)
        if ajv["event"] != (not isinstance(capture, Invalid)):
            differ.append(f"{case['name']}: capture {capture!r}, ajv {ajv['event']} {ajv['errors'][:2]}")
        elif ajv["own"] is not None and ajv["own"] != ajv["event"]:
            differ.append(f"{case['name']}: event.json says {ajv['event']}, its type's own schema {ajv['own']}")
    assert not differ, "\n".join(differ)


def test_committed_typescript_matches_the_schemas() -> None:
    try:
        text = typescript()
    except node.NodeUnavailableError as e:
        pytest.fail(f"{e}: the agreement tests need node and npm (Debian: nodejs, npm)")
    assert TYPESCRIPT_PATH.read_text() == text, "run `python -m flywheel_feedback.schemas.generate` and commit"
