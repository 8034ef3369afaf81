"""Generate the committed contract files from the models: `python -m flywheel_feedback.schemas.generate`.

schemas/jsonschema/<type>.json  one JSON Schema per event type
schemas/jsonschema/event.json   the discriminated union of all of them
schemas/asyncapi.json           an AsyncAPI 3.0 document for the events topic and its dead-letter topic
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flywheel_feedback.schemas.events import EVENT_ADAPTER, EVENT_MODELS, SCHEMA_VERSION

HERE = Path(__file__).parent
JSONSCHEMA_DIR = HERE / "jsonschema"
ASYNCAPI_PATH = HERE / "asyncapi.json"
EVENTS_TOPIC = "flywheel.events"
DLQ_TOPIC = "flywheel.events.dlq"


def json_schemas() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://flywheel.dev/schemas/v{SCHEMA_VERSION}/{kind}.json"
        schemas[kind] = schema
    union = EVENT_ADAPTER.json_schema(mode="validation")
    union["$id"] = f"https://flywheel.dev/schemas/v{SCHEMA_VERSION}/event.json"
    union["title"] = "Event"
    schemas["event"] = union
    return schemas


def asyncapi() -> dict[str, Any]:
    union = EVENT_ADAPTER.json_schema(mode="validation", ref_template="#/components/schemas/{model}")
    components = union.pop("$defs", {})
    messages = {
        kind: {
            "name": kind,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else kind,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "interaction_id"}}},
        }
        for kind, model in EVENT_MODELS.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "flywheel events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": "What product apps send: what their model served and what users did with it. "
            "Key every message by interaction_id so an interaction's events stay in one partition, in order.",
        },
        "channels": {
            "events": {
                "address": EVENTS_TOPIC,
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
            },
            "deadLetters": {
                "address": DLQ_TOPIC,
                "description": "Events that failed validation: the original bytes, with the reason in the "
                "'flywheel-dlq-reason' header and the source position in 'flywheel-source-*' headers.",
                "messages": {"rejected": {"$ref": "#/components/messages/rejected"}},
            },
        },
        "operations": {
            "emitEvents": {"action": "send", "channel": {"$ref": "#/channels/events"}},
            "readDeadLetters": {"action": "receive", "channel": {"$ref": "#/channels/deadLetters"}},
        },
        "components": {
            "schemas": components,
            "messages": {
                **messages,
                "rejected": {
                    "name": "rejected",
                    "contentType": "application/octet-stream",
                    "payload": {"type": "string", "description": "the original message bytes"},
                    "headers": {
                        "type": "object",
                        "properties": {
                            "flywheel-dlq-reason": {"type": "string"},
                            "flywheel-source-topic": {"type": "string"},
                            "flywheel-source-partition": {"type": "string"},
                            "flywheel-source-offset": {"type": "string"},
                        },
                    },
                },
            },
        },
    }


def rendered() -> dict[Path, str]:
    """Every generated file and its exact text."""
    files = {JSONSCHEMA_DIR / f"{k}.json": _dump(v) for k, v in json_schemas().items()}
    files[ASYNCAPI_PATH] = _dump(asyncapi())
    return files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def main() -> None:
    JSONSCHEMA_DIR.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
