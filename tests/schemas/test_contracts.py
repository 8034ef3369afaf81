from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from flywheel_feedback.schemas.events import (
    EVENT_MODELS,
    Interaction,
    ModelInput,
    Rating,
    parse_event,
)
from flywheel_feedback.schemas.generate import rendered
from flywheel_feedback.services.lake.tables import EVENT_JSON_SCHEMA

TS = "2026-11-27T10:00:00Z"


def interaction_json(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "e-1",
        "type": "interaction",
        "ts": TS,
        "interaction_id": "i-1",
        "session_id": "s-1",
        "user_id": "u-1",
        "app": "support-bot",
        "task": "reply-draft",
        "model": {"id": "m", "version": "1", "provider": "p"},
        "input": {"prompt": "hello"},
        "output": "hi there",
    }
    event.update(changes)
    return event


def test_committed_contract_files_match_the_models() -> None:
    stale = [str(path) for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    assert not stale, f"run `python -m flywheel_feedback.schemas.generate` and commit: {stale}"


def test_every_type_has_a_schema_and_the_asyncapi_lists_it() -> None:
    files = {p.name: json.loads(t) for p, t in rendered().items()}
    api = files["asyncapi.json"]
    for kind in EVENT_MODELS:
        assert f"{kind}.json" in files
        assert "type" in files[f"{kind}.json"]["required"]
        assert kind in api["channels"]["events"]["messages"]


def test_interaction_round_trip_keeps_unknown_fields() -> None:
    raw = interaction_json(experiment="b", metadata={"segment": "pro"})
    event = parse_event(json.dumps(raw))
    assert isinstance(event, Interaction)
    assert event.model_extra == {"experiment": "b"}
    assert json.loads(event.model_dump_json())["experiment"] == "b"
    assert event.input.text() == "hello"


def test_chat_input_is_accepted_and_its_text_is_the_last_user_message() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2?"}]
    event = parse_event(json.dumps(interaction_json(input={"messages": messages})))
    assert isinstance(event, Interaction)
    assert event.input.text() == "what is 2+2?"
    with pytest.raises(ValidationError, match="prompt or at least one chat message"):
        ModelInput()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"latency_ms": "12"}, "int_type"),
        ({"latency_ms": -1}, "greater_than_equal"),
        ({"event_id": 5}, "string_type"),
        ({"event_id": ""}, "string_too_short"),
        ({"ts": "2026-11-27T10:00:00"}, "timestamp_format"),
        ({"ts": "2026-06-30T23:59:60Z"}, "timestamp_format"),
        ({"ts": "2026-02-29T10:00:00Z"}, "datetime_from_date_parsing"),
        ({"interaction_id": None}, "string_type"),
        ({"type": "like"}, "union_tag_invalid"),
    ],
)
def test_contract_is_strict(change: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps(interaction_json(**change)))
    assert expected in {e["type"] for e in info.value.errors()}


def test_rating_has_exactly_one_scale() -> None:
    base = {"event_id": "r", "type": "rating", "ts": TS, "interaction_id": "i"}
    assert isinstance(parse_event(json.dumps({**base, "thumbs": "up"})), Rating)
    assert isinstance(parse_event(json.dumps({**base, "score": 3, "comment": "ok"})), Rating)
    for bad in ({}, {"thumbs": "up", "score": 3}, {"score": 6}, {"thumbs": "sideways"}):
        with pytest.raises(ValidationError):
            parse_event(json.dumps({**base, **bad}))


def test_feedback_needs_its_interaction_id() -> None:
    with pytest.raises(ValidationError, match="interaction_id"):
        parse_event(json.dumps({"event_id": "c", "type": "copy", "ts": TS}))


def test_every_typed_field_has_a_lake_column() -> None:
    # metadata and extra fields live in the `raw` column; everything else must have a column
    missing = {
        name
        for model in EVENT_MODELS.values()
        for name in model.model_fields
        if name not in EVENT_JSON_SCHEMA and name not in ("ts", "metadata")
    }
    assert not missing


def test_python_code_may_omit_type_but_not_ids() -> None:
    event = Rating(event_id="r", ts=datetime.now(UTC), interaction_id="i", thumbs="down")
    assert json.loads(event.model_dump_json())["type"] == "rating"
