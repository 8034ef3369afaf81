"""Generate the committed contract files from the models: `python -m flywheel_feedback.schemas.generate`.

schemas/jsonschema/<type>.json  one JSON Schema per event type
schemas/jsonschema/event.json   the discriminated union of all of them
schemas/asyncapi.json           an AsyncAPI 3.0 document for the events topic and its dead-letter topic
schemas/typescript/events.d.ts  TypeScript declarations of event.json (needs node; see schemas/node.py)

The JSON Schemas are draft 2020-12 and say everything capture enforces, so that a standard validator (ajv in
strict mode, with ajv-formats) gives every document capture's verdict; tests/schemas/test_agreement.py checks it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

from flywheel_feedback.schemas import node
from flywheel_feedback.schemas.events import EVENT_ADAPTER, EVENT_MODELS, SCHEMA_VERSION

HERE = Path(__file__).parent
JSONSCHEMA_DIR = HERE / "jsonschema"
ASYNCAPI_PATH = HERE / "asyncapi.json"
TYPESCRIPT_PATH = HERE / "typescript" / "events.d.ts"
EVENTS_TOPIC = "flywheel.events"
DLQ_TOPIC = "flywheel.events.dlq"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Capture's JSON parser rejects a lone surrogate escape anywhere in a document (it is not Unicode text and
# has no UTF-8 form); a JSON Schema validator sees JavaScript strings, which can hold one. So every string
# and every member name carries this pattern (ajv compiles patterns with the `u` flag: a surrogate pair is
# one code point outside the class, a lone surrogate is inside it).
UNICODE_TEXT = "^[^\\uD800-\\uDFFF]*$"
JSON_VALUE = "JsonValue"


class ContractJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, plus what capture enforces that pydantic does not write down."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        result = super().generate(schema, mode)
        ref = {"$ref": self.ref_template.format(model=JSON_VALUE)}
        _constrain(result, ref)
        for definition in result.get("$defs", {}).values():
            _constrain(definition, ref)
        result.setdefault("$defs", {})[JSON_VALUE] = _json_value(ref)
        return result

    def tagged_union_schema(self, schema: Any) -> JsonSchemaValue:
        # `discriminator` is OpenAPI's keyword, not JSON Schema's: strict validators reject it. Each
        # branch's `type` const already picks the branch.
        result = super().tagged_union_schema(schema)
        result.pop("discriminator", None)
        return result


def _constrain(schema: Any, ref: dict[str, str]) -> None:
    """Every string gets UNICODE_TEXT; every object's member names too, and its unknown members are JsonValues."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and "pattern" not in schema and "const" not in schema and "enum" not in schema:
        schema["pattern"] = UNICODE_TEXT
    if schema.get("type") == "object":
        schema.setdefault("propertyNames", {"pattern": UNICODE_TEXT})
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = dict(ref)
    for key in ("properties", "patternProperties"):
        for sub in schema.get(key, {}).values():
            _constrain(sub, ref)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key, []):
            _constrain(sub, ref)
    for key in ("items", "additionalProperties", "not"):
        _constrain(schema.get(key), ref)


def _json_value(ref: dict[str, str]) -> dict[str, Any]:
    # Scalars are "not a string, array or object" rather than {"type": "number"}: ajv's number type refuses
    # a number beyond the double range (1e400 reads as Infinity), which is valid JSON and which capture keeps.
    scalar = {"not": {"anyOf": [{"type": "string"}, {"type": "array"}, {"type": "object"}]}}
    return {
        "description": "Any JSON value whose strings and member names are Unicode text (no lone surrogate).",
        "anyOf": [
            {"type": "string", "pattern": UNICODE_TEXT},
            {"type": "array", "items": dict(ref)},
            {"type": "object", "propertyNames": {"pattern": UNICODE_TEXT}, "additionalProperties": dict(ref)},
            scalar,
        ],
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation", schema_generator=ContractJsonSchema)
        schemas[kind] = {"$schema": DRAFT, "$id": f"https://flywheel.dev/schemas/v{SCHEMA_VERSION}/{kind}.json"}
        schemas[kind].update(schema)
    union = EVENT_ADAPTER.json_schema(mode="validation", schema_generator=ContractJsonSchema)
    schemas["event"] = {"$schema": DRAFT, "$id": f"https://flywheel.dev/schemas/v{SCHEMA_VERSION}/event.json"}
    schemas["event"].update(union, title="Event")
    return schemas


def typescript() -> str:
    """TypeScript declarations of event.json: one interface per event type and the `Event` union."""
    schema = copy.deepcopy(json_schemas()["event"])
    # A JsonValue is `unknown` in TypeScript: a recursive union would not fit the index signatures of the
    # interfaces that hold one.
    schema["$defs"][JSON_VALUE] = {"tsType": "unknown"}
    for definition in schema["$defs"].values():
        if definition.get("type") == "object":
            # the cross-field rules (one of thumbs or score, a prompt or messages) have no useful TypeScript
            # form: json-schema-to-typescript would intersect each interface with shapeless objects
            definition.pop("anyOf", None)
            definition.pop("oneOf", None)
            for field in definition.get("properties", {}).values():
                field.pop("title", None)  # a title makes a named alias per field (EventId1, EventId2, ...)
    return node.run("typescript.mjs", json.dumps(schema, sort_keys=True))


def asyncapi() -> dict[str, Any]:
    union = EVENT_ADAPTER.json_schema(
        mode="validation", ref_template="#/components/schemas/{model}", schema_generator=ContractJsonSchema
    )
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
    """Every generated file that needs only Python, and its exact text (TYPESCRIPT_PATH needs node)."""
    files = {JSONSCHEMA_DIR / f"{k}.json": _dump(v) for k, v in json_schemas().items()}
    files[ASYNCAPI_PATH] = _dump(asyncapi())
    return files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def main() -> None:
    files = rendered()
    files[TYPESCRIPT_PATH] = typescript()
    for path, text in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
