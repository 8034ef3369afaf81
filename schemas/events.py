"""The event contracts: what product apps send to Kafka.

These pydantic models are the single source of truth. The JSON Schema files and the
AsyncAPI document under `schemas/` are generated from them (`python -m flywheel_feedback.schemas.generate`)
and a test fails when the committed files drift from the models.

Every event carries `event_id`, `type`, `schema_version` and `ts`; feedback events carry
the `interaction_id` they are about. Fields are strict (no string-to-number coercion) so
that every language's emitter is held to one exact contract. Unknown extra fields are kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from flywheel_feedback.schemas.wire import JsonInt, NonNegativeInt, Timestamp

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class ModelRef(_Strict):
    """Which model produced an output."""

    id: Id
    version: Id
    provider: str | None = None


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


def _present(name: str) -> dict[str, Any]:
    """JSON Schema for "the field is there and not null" (Python: `is not None`)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


class ModelInput(_Strict):
    """What the model was given: a plain prompt, or chat messages (at least one of them)."""

    # _one_form's rule, for other languages' validators
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                _present("prompt"),
                {"required": ["messages"], "properties": {"messages": {"type": "array", "minItems": 1}}},
            ]
        }
    )

    prompt: str | None = None
    messages: list[ChatMessage] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ModelInput:
        if self.prompt is None and not self.messages:
            raise ValueError("input needs a prompt or at least one chat message")
        return self

    def text(self) -> str:
        """The user-facing text of the input: the prompt, or the last user message."""
        if self.prompt is not None:
            return self.prompt
        messages = self.messages or []
        users = [m.content for m in messages if m.role == "user"]
        if users:
            return users[-1]
        return messages[-1].content if messages else ""


def _type_is_required(schema: dict[str, Any]) -> None:
    # `type` has a default so Python code can omit it, but on the wire it is the discriminator.
    required = schema.setdefault("required", [])
    if "type" in schema.get("properties", {}) and "type" not in required:
        required.insert(0, "type")


def _rating_schema(schema: dict[str, Any]) -> None:
    _type_is_required(schema)
    schema["oneOf"] = [_present("thumbs"), _present("score")]  # Rating._one_scale's rule


class EventBase(_Strict):
    model_config = ConfigDict(json_schema_extra=_type_is_required)

    event_id: Id = Field(description="Unique id of this event; readers deduplicate by it.")
    schema_version: Annotated[int, JsonInt(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    ts: Timestamp = Field(description="When it happened, ISO 8601 with a time zone.")


class Interaction(EventBase):
    """What the model served: one input, one output."""

    type: Literal["interaction"] = "interaction"
    interaction_id: Id
    session_id: Id
    user_id: Id = Field(description="A pseudonymous user id, never an e-mail or a name.")
    app: Id
    task: Id
    model: ModelRef
    input: ModelInput
    output: str
    latency_ms: NonNegativeInt | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class FeedbackBase(EventBase):
    interaction_id: Id = Field(description="The interaction this feedback is about.")


class Rating(FeedbackBase):
    """An explicit rating: thumbs up/down or a 1-5 score, with an optional comment."""

    model_config = ConfigDict(json_schema_extra=_rating_schema)

    type: Literal["rating"] = "rating"
    thumbs: Literal["up", "down"] | None = None
    score: Annotated[int, JsonInt(ge=1, le=5)] | None = None
    comment: str | None = None

    @model_validator(mode="after")
    def _one_scale(self) -> Rating:
        if (self.thumbs is None) == (self.score is None):
            raise ValueError("a rating has exactly one of thumbs or score")
        return self


class Edit(FeedbackBase):
    """The user edited the output; `text` is what they kept."""

    type: Literal["edit"] = "edit"
    text: str


class Retry(FeedbackBase):
    """The user asked for a regeneration; the new output is its own interaction."""

    type: Literal["retry"] = "retry"
    new_interaction_id: Id | None = None


class Copy(FeedbackBase):
    """The user copied (part of) the output."""

    type: Literal["copy"] = "copy"
    chars: NonNegativeInt | None = None


class Accept(FeedbackBase):
    """The user accepted the output (applied a suggestion, sent a drafted reply, ...)."""

    type: Literal["accept"] = "accept"


class Abandon(FeedbackBase):
    """The user explicitly left without using the output."""

    type: Literal["abandon"] = "abandon"
    reason: str | None = None


class Followup(FeedbackBase):
    """The user's next prompt; a close paraphrase of the original means a rephrase."""

    type: Literal["followup"] = "followup"
    prompt: str
    next_interaction_id: Id | None = None


class Correction(FeedbackBase):
    """The user stated the right answer."""

    type: Literal["correction"] = "correction"
    text: str


class Dwell(FeedbackBase):
    """Time the user spent with the output."""

    type: Literal["dwell"] = "dwell"
    dwell_ms: NonNegativeInt


FeedbackEvent = Rating | Edit | Retry | Copy | Accept | Abandon | Followup | Correction | Dwell
Event = Annotated[Interaction | FeedbackEvent, Field(discriminator="type")]

EVENT_MODELS: dict[str, type[EventBase]] = {
    m.model_fields["type"].default: m
    for m in (Interaction, Rating, Edit, Retry, Copy, Accept, Abandon, Followup, Correction, Dwell)
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
FEEDBACK_TYPES: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t != "interaction")

EVENT_ADAPTER: TypeAdapter[Interaction | FeedbackEvent] = TypeAdapter(Event)


def parse_event(raw: bytes | str) -> Interaction | FeedbackEvent:
    """Validate one JSON-encoded event. Raises pydantic.ValidationError with the reason."""
    return EVENT_ADAPTER.validate_json(raw)


def utc_iso(ts: datetime) -> str:
    """The wire form of a timestamp."""
    return ts.isoformat().replace("+00:00", "Z")
