"""What a model was given and what it answered, read from an LLM span's attributes under each convention.

In order of preference (the first convention that has the input wins; the output comes from the same one when
it has it):

- `gen_ai`: the current OpenTelemetry GenAI conventions, `gen_ai.input.messages` / `gen_ai.output.messages`
  (JSON text or structured values: messages of typed `parts`) and `gen_ai.system_instructions`; also as the
  attributes of a `gen_ai.client.inference.operation.details` span event.
- `openinference`: `llm.input_messages.N.message.*` / `llm.output_messages.N.message.*`, and when those are
  hidden `input.value` / `output.value` (the request and response JSON, or plain text).
- `openllmetry`: OpenLLMetry's earlier indexed attributes, `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`.
- `gen_ai.events`: the earlier GenAI span events `gen_ai.content.prompt` / `gen_ai.content.completion`, whose
  `gen_ai.prompt` / `gen_ai.completion` attributes hold the messages as JSON.

A message's content is its text; a tool call is written as JSON (`{"tool_call": {"name", "arguments"}}`), a
tool's answer as its text, other parts (images, files) as `[<modality>]`, reasoning is left out. The output is the
first choice's text (its tool calls as JSON when it has no text). Roles map onto the contract's four
(`developer` -> system, `model`/`ai` -> assistant, `function` -> tool, `human` -> user); another role, or content
that does not parse, makes the span malformed.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flywheel_feedback.services.otlp.decode import MalformedOtlpError

Attributes = Mapping[str, Any]
ModelInput = dict[str, Any]  # {"messages": [{"role", "content"}, ...]} or {"prompt": str}

_ROLES = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "model": "assistant", "ai": "assistant",
    "tool": "tool", "function": "tool", "ipython": "tool",
}


@dataclass(frozen=True, slots=True)
class Content:
    input: ModelInput | None
    output: str | None
    convention: str | None


def read_content(attributes: Attributes) -> Content:
    """The input and output of an LLM span, and the convention they were read under (None: no content)."""
    for convention, read_input, read_output in _CONVENTIONS:
        model_input = read_input(attributes)
        if model_input is not None:
            output = read_output(attributes)
            return Content(model_input, _any_output(attributes) if output is None else output, convention)
    return Content(None, _any_output(attributes), None)


def _any_output(attributes: Attributes) -> str | None:
    return next((o for _, _, read in _CONVENTIONS if (o := read(attributes)) is not None), None)


# --- the current GenAI conventions ------------------------------------------------------------------------

def _gen_ai_input(attributes: Attributes) -> ModelInput | None:
    messages = _structured(attributes, "gen_ai.input.messages")
    if messages is None:
        return None
    chat = [_part_message(m, "gen_ai.input.messages") for m in messages]
    instructions = _structured(attributes, "gen_ai.system_instructions")
    if instructions:
        chat.insert(0, {"role": "system", "content": _parts_text(instructions, "gen_ai.system_instructions")})
    return {"messages": chat} if chat else None


def _gen_ai_output(attributes: Attributes) -> str | None:
    messages = _structured(attributes, "gen_ai.output.messages")
    if not messages:
        return None
    first = messages[0]
    if not isinstance(first, dict):
        raise MalformedOtlpError("gen_ai.output.messages: a message is not an object")
    return _parts_text(_list(first.get("parts"), "gen_ai.output.messages"), "gen_ai.output.messages", answer=True)


def _part_message(message: object, where: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise MalformedOtlpError(f"{where}: a message is not an object")
    role = _role(message.get("role"), where)
    if "parts" not in message and "content" in message:  # the conventions before typed parts
        return {"role": role, "content": _text(message["content"])}
    return {"role": role, "content": _parts_text(_list(message.get("parts"), where), where)}


def _parts_text(parts: list[Any], where: str, *, answer: bool = False) -> str:
    texts: list[str] = []
    other: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            raise MalformedOtlpError(f"{where}: a message part is not an object")
        kind = part.get("type")
        if kind == "text":
            texts.append(_text(part.get("content")))
        elif kind == "reasoning":
            continue
        elif kind == "tool_call":
            other.append(_tool_call(part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            other.append(_text(part.get("response")))
        else:
            other.append(f"[{part.get('modality') or kind}]")
    if answer and texts:
        return "\n".join(texts)
    return "\n".join(texts + other)


# --- OpenInference ------------------------------------------------------------------------------------------

def _openinference_input(attributes: Attributes) -> ModelInput | None:
    messages = [_indexed_message(m, "message.") for m in _indexed(attributes, "llm.input_messages")]
    if messages:
        return {"messages": messages}
    return _request_value(attributes)


def _openinference_output(attributes: Attributes) -> str | None:
    messages = _indexed(attributes, "llm.output_messages")
    if messages:
        return _indexed_message(messages[0], "message.", answer=True)["content"]
    return _response_value(attributes)


def _indexed_message(fields: dict[str, Any], prefix: str, *, answer: bool = False) -> dict[str, str]:
    role = _role(fields.get(f"{prefix}role"), "llm.*_messages" if prefix else "gen_ai.prompt/completion.N")
    content = fields.get(f"{prefix}content")
    if content is None:  # multi-part: message.contents.N.message_content.text
        parts = sorted(
            (int(m.group(1)), v)
            for k, v in fields.items()
            if (m := re.fullmatch(rf"{re.escape(prefix)}contents\.(\d+)\.message_content\.text", k))
        )
        content = "\n".join(_text(v) for _, v in parts) if parts else None
    names = (".tool_call.function.name", ".tool_call.function.arguments") if prefix else (".name", ".arguments")
    calls = _tool_calls(fields, f"{prefix}tool_calls", *names)
    read = _text if prefix else _parts_json_text  # OpenInference: text as it is; OpenLLMetry: parts as JSON text
    text = [read(content)] if content is not None else []
    if answer and text:
        return {"role": role, "content": text[0]}
    return {"role": role, "content": "\n".join(text + calls)}


def _request_value(attributes: Attributes) -> ModelInput | None:
    value = attributes.get("input.value")
    if not isinstance(value, str):
        return None
    request = _json_value(value, attributes.get("input.mime_type"))
    if isinstance(request, dict) and isinstance(request.get("messages"), list) and request["messages"]:
        return {"messages": [_plain_message(m, "input.value") for m in request["messages"]]}
    if isinstance(request, dict) and isinstance(request.get("prompt"), str):
        return {"prompt": request["prompt"]}
    return {"prompt": value}


def _response_value(attributes: Attributes) -> str | None:
    value = attributes.get("output.value")
    if not isinstance(value, str):
        return None
    response = _json_value(value, attributes.get("output.mime_type"))
    if isinstance(response, dict) and isinstance(response.get("choices"), list) and response["choices"]:
        choice = response["choices"][0]
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict):
                content = message.get("content")
                if content is not None:
                    return _text(content)
                calls = message.get("tool_calls") or []
                return "\n".join(
                    _tool_call(c.get("function", {}).get("name"), c.get("function", {}).get("arguments"))
                    for c in calls if isinstance(c, dict)
                )
            if "text" in choice:
                return _text(choice["text"])
    return value


# --- OpenLLMetry's earlier attributes, and the earlier GenAI content events ----------------------------------

def _openllmetry_input(attributes: Attributes) -> ModelInput | None:
    messages = [_indexed_message(m, "") for m in _indexed(attributes, "gen_ai.prompt")]
    return {"messages": messages} if messages else None


def _openllmetry_output(attributes: Attributes) -> str | None:
    completions = _indexed(attributes, "gen_ai.completion")
    if not completions:
        return None
    first = completions[0]
    if "role" not in first:
        first = {**first, "role": "assistant"}
    return _indexed_message(first, "", answer=True)["content"]


def _events_input(attributes: Attributes) -> ModelInput | None:
    messages = _structured(attributes, "gen_ai.prompt")
    if not messages:
        return None
    return {"messages": [_plain_message(m, "gen_ai.prompt") for m in messages]}


def _events_output(attributes: Attributes) -> str | None:
    messages = _structured(attributes, "gen_ai.completion")
    if not messages:
        return None
    first = messages[0]
    return _text(first.get("content")) if isinstance(first, dict) else _text(first)


_Reader = Callable[[Attributes], Any]
_CONVENTIONS: tuple[tuple[str, _Reader, _Reader], ...] = (
    ("gen_ai", _gen_ai_input, _gen_ai_output),
    ("openinference", _openinference_input, _openinference_output),
    ("openllmetry", _openllmetry_input, _openllmetry_output),
    ("gen_ai.events", _events_input, _events_output),
)


# --- shared helpers -----------------------------------------------------------------------------------------

def _indexed(attributes: Attributes, prefix: str) -> list[dict[str, Any]]:
    """`prefix.N.rest = v` attributes as one dict {rest: v} per N, in order of N."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.(.+)")
    groups: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        if key.startswith(prefix) and (match := pattern.fullmatch(key)):
            groups.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [groups[i] for i in sorted(groups)]


def _tool_calls(fields: dict[str, Any], prefix: str, name: str, arguments: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    indexes = sorted({int(m.group(1)) for k in fields if (m := pattern.match(k))})
    return [_tool_call(fields.get(f"{prefix}.{i}{name}"), fields.get(f"{prefix}.{i}{arguments}")) for i in indexes]


def _tool_call(name: object, arguments: object) -> str:
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return json.dumps({"tool_call": {"name": name, "arguments": arguments}}, ensure_ascii=False)


def _plain_message(message: object, where: str) -> dict[str, str]:
    """An OpenAI-style message: {role, content} with content text or a list of content parts."""
    if not isinstance(message, dict):
        raise MalformedOtlpError(f"{where}: a message is not an object")
    content = message.get("content")
    calls = [
        _tool_call(c.get("function", {}).get("name"), c.get("function", {}).get("arguments"))
        for c in message.get("tool_calls") or [] if isinstance(c, dict)
    ]
    text = _text(content) if content is not None else ""
    return {"role": _role(message.get("role"), where), "content": "\n".join([text, *calls]) if calls else text}


def _role(role: object, where: str) -> str:
    mapped = _ROLES.get(role.lower()) if isinstance(role, str) else None
    if mapped is None:
        raise MalformedOtlpError(f"{where}: message role {role!r} is none of {', '.join(sorted(_ROLES))}")
    return mapped


def _text(content: object) -> str:
    """Content as text: a string as is, OpenAI content parts joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text", p.get("content")) for p in content]
        return "\n".join(t if isinstance(t, str) else f"[{p.get('type')}]" for t, p in zip(texts, content, strict=True))
    return json.dumps(content, ensure_ascii=False)


def _parts_json_text(content: object) -> str:
    """OpenLLMetry writes a message's list of content parts as JSON text; other text stays as it is."""
    if isinstance(content, str) and content.startswith("[{"):
        try:
            parsed = json.loads(content)
        except ValueError:
            return content
        if isinstance(parsed, list) and all(isinstance(p, dict) and "type" in p for p in parsed):
            return _text(parsed)
    return _text(content)


def _structured(attributes: Attributes, key: str) -> list[Any] | None:
    """An attribute holding a list, as JSON text (what the Python SDK writes) or a structured OTLP value."""
    value = attributes.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise MalformedOtlpError(f"{key} is not valid JSON: {e}") from None
    return _list(value, key)


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise MalformedOtlpError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _json_value(value: str, mime_type: object) -> object:
    if mime_type != "application/json":
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
