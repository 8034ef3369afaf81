from __future__ import annotations

import json

import pytest

from flywheel_feedback.services.capture.validate import Invalid, check_batch, check_message, json_lines

GOOD = {"event_id": "e", "type": "copy", "ts": "2026-11-27T10:00:00+01:00", "interaction_id": "i"}


def test_a_valid_event_comes_back_as_one_line() -> None:
    pretty = json.dumps(GOOD, indent=2).encode()
    verdict = check_message(pretty, max_bytes=10_000)
    assert isinstance(verdict, bytes)
    assert b"\n" not in verdict
    assert json.loads(verdict) == GOOD


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty message"),
        (b"", "empty message"),
        (b'{"event_id": "e", "type": ', "invalid JSON"),
        (b"\xff\xfe garbage", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (json.dumps({**GOOD, "type": "like"}).encode(), "unknown event type 'like'"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "type"}).encode(), "missing field 'type'"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}).encode(), "missing at copy.event_id"),
        (json.dumps({**GOOD, "chars": "12"}).encode(), "int_type at copy.chars"),
        (json.dumps({**GOOD, "padding": "x" * 5000}).encode(), "oversized: 5"),
    ],
)
def test_bad_input_gets_a_clear_reason(value: bytes | None, reason: str) -> None:
    verdict = check_message(value, max_bytes=4096)
    assert isinstance(verdict, Invalid)
    assert reason in verdict.reason


def test_a_batch_gets_the_verdicts_of_single_messages() -> None:
    values: list[bytes | None] = [
        json.dumps(GOOD).encode(),
        None,
        b'{"event_id": "e", "type": ',
        json.dumps(GOOD, indent=2).encode(),
        json.dumps({**GOOD, "padding": "x" * 5000}).encode(),
        b"[1, 2]",
        json.dumps({**GOOD, "event_id": "f"}).encode(),
    ]
    single = [check_message(value, max_bytes=4096) for value in values]
    rejected = check_batch(values, max_bytes=4096)
    assert rejected == {i: v.reason for i, v in enumerate(single) if isinstance(v, Invalid)}
    assert list(rejected) == [1, 2, 4, 5]
    valid = [value for i, value in enumerate(values) if i not in rejected and value is not None]
    assert json_lines(valid) == b"".join(line + b"\n" for line in single if isinstance(line, bytes))
    assert check_batch([json.dumps(GOOD).encode()] * 600, max_bytes=4096) == {}
