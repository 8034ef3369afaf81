"""What training code requires of chat data, as checks tests run on exports.

- `openai_chat_problems`: OpenAI's chat fine-tuning format (a line is {"messages": [...]}: roles system, user,
  assistant, tool; every message has non-empty text content; after the system messages, user and assistant
  turns alternate, starting with the user; a tool message answers the assistant turn before it; the last
  message is the assistant's, the turn that is learned).
- `conversational`: TRL's notion of a conversational example (`trl.data_utils.is_conversational`: the first of
  its prompt / chosen / rejected / completion / messages fields is a list of {role, content} messages),
  written out so the check runs where TRL is not installed (it needs transformers, 130 MB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "weight"}
CONVERSATIONAL_KEYS = ("prompt", "chosen", "rejected", "completion", "messages")


def openai_chat_problems(example: Mapping[str, Any]) -> list[str]:
    """What is wrong with one line of an OpenAI chat fine-tuning file (empty: nothing)."""
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["no messages list"]
    problems: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            problems.append(f"message {i} is not an object")
            continue
        unknown = set(message) - MESSAGE_KEYS
        if unknown:
            problems.append(f"message {i} has unknown keys {sorted(unknown)}")
        if message.get("role") not in ROLES:
            problems.append(f"message {i} has role {message.get('role')!r}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"message {i} ({message.get('role')}) has no content")
    if problems:
        return problems
    roles = [str(m["role"]) for m in messages]
    turns = roles[next((i for i, r in enumerate(roles) if r != "system"), len(roles)):]
    if "system" in turns:
        problems.append("a system message after the conversation started")
    expected = "user"
    for i, role in enumerate(turns):
        if role == "tool":
            if i == 0 or turns[i - 1] not in ("assistant", "tool"):
                problems.append(f"turn {i}: a tool message that answers no assistant turn")
            expected = "assistant"
            continue
        if role != expected:
            problems.append(f"turn {i}: {role} where {expected} was due ({turns})")
        expected = "assistant" if role == "user" else "user"
    if not turns or turns[-1] != "assistant":
        problems.append("the last message is not the assistant's")
    return problems


def is_message_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, Mapping) and {"role", "content"} <= set(m) for m in value))


def conversational(example: Mapping[str, Any]) -> bool:
    """TRL's is_conversational, written out: the first conversational key present holds messages."""
    for key in CONVERSATIONAL_KEYS:
        if key in example:
            return is_message_list(example[key])
    return False
