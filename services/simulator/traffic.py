"""Realistic product traffic with a hidden truth.

Every interaction gets a hidden quality (good or bad) that depends on its model version and
topic. Users react to it the way people do: bad outputs are edited heavily, retried, rephrased
and abandoned; good ones are copied and accepted. About 1% get an explicit rating. Some
feedback arrives late, some out of order, some twice. With drift on, the topic mix shifts
halfway, a new topic appears and model versions change (one of them silently gets worse).

A share of sessions (`chat_share`) is a chat product: multi-turn conversations under a system prompt, where each
turn's input holds the earlier turns with the answers the user saw, the next turn follows from the last (a
follow-up about the same item, or a rephrase after a bad answer), a retry regenerates the turn from the same
conversation, and lookups add a tool message.

`generate` yields (event dict, truth row or None) in arrival order, with bounded memory.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel_feedback.schemas.events import utc_iso
from flywheel_feedback.services.simulator.catalog import (
    CHAT,
    CHAT_FOLLOWUPS,
    CHAT_LOOKUP,
    CHAT_SYSTEM,
    CHAT_TOOL_RESULT,
    GENERIC_BAD,
    LOCALES,
    NEW_TOPIC,
    SEGMENTS,
    TASKS,
    Task,
    Topic,
)
from flywheel_feedback.services.simulator.changes import ModelChange, in_force

# model per app, and its versions before / after the drift point, with the chance of a good output
MODELS: dict[str, tuple[str, str, float, str, float]] = {
    "support-bot": ("support-llm", "2026-09-01", 0.72, "2026-11-15", 0.55),
    "code-assistant": ("code-llm", "v3.1", 0.68, "v3.2", 0.80),
    "writing-helper": ("write-llm", "w-7", 0.78, "w-7", 0.78),
    "support-chat": ("chat-llm", "c-2026-10", 0.70, "c-2026-11", 0.62),
}
Message = dict[str, str]

PII_SNIPPETS = (
    " You can reach me at jane.doe{n}@example.com.",
    " Call me on +1 415 555 {n:04d} if needed.",
    " My card is {card}.",
    " Use my API key sk-live-{n:04d}abcdefghijklmnopqrstuv.",
)


def planted_card(n: int) -> str:
    """A Visa test number holding `n`, with its Luhn check digit: real cards pass Luhn, so must planted ones."""
    body = f"411111111{n:04d}00"
    # from the right, every other digit of the body is doubled (the check digit will be the rightmost)
    doubled = [int(ch) * (2 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(body))]
    total = sum(d - 9 if d > 9 else d for d in doubled)
    digits = body + str(-total % 10)
    return " ".join(digits[i:i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class SimulationConfig:
    interactions: int = 5_000
    seed: int = 7
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    hours: float = 72.0
    drift: bool = True
    drift_at: float = 0.5
    users: int = 400
    rating_rate: float = 0.01
    duplicate_rate: float = 0.01
    late_rate: float = 0.05
    pii_rate: float = 0.03
    chat_share: float = 0.1  # of sessions: the chat product's multi-turn conversations
    # Signal-rate multipliers (keyword-only): how much likelier than by default a user copies or edits an
    # output, for traffic unlike the default mix (e.g. copy_scale=0.1, edit_scale=2.0 with rating_rate=0).
    copy_scale: float = field(default=1.0, kw_only=True)
    edit_scale: float = field(default=1.0, kw_only=True)
    # Silent model changes and migrations from a given time (services/simulator/changes.py).
    changes: tuple[ModelChange, ...] = field(default=(), kw_only=True)


@dataclass(frozen=True)
class Truth:
    interaction_id: str
    app: str
    task: str
    topic: str
    model_version: str
    good: bool
    ts: datetime
    has_pii: bool


def _mix(task: Task, late: bool, drift: bool) -> tuple[list[Topic], list[float]]:
    topics = list(task.topics)
    weights = [1.0] * len(topics)
    if drift and late:
        # The first topic fades, the last grows, and support gets a new topic.
        weights[0], weights[-1] = 0.15, 3.0
        if task.app == "support-bot":
            topics.append(NEW_TOPIC)
            weights.append(3.0)
    return topics, weights


def _edit_text(rng: random.Random, text: str, heavy: bool, good_alternative: str) -> str:
    if heavy:
        return good_alternative
    words = text.split()
    for _ in range(max(1, len(words) // 12)):
        i = rng.randrange(len(words))
        words[i] = rng.choice(("really", "quickly", "simply", "now", "please", words[i].upper()))
    return " ".join(words)


class _Clock:
    """Arrival-ordered emission: events wait in a heap until their arrival time has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, dict[str, Any], Truth | None]] = []
        self._seq = 0

    def push(self, arrival: datetime, event: dict[str, Any], truth: Truth | None = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (arrival, self._seq, event, truth))

    def pop_until(self, now: datetime | None) -> Iterator[tuple[dict[str, Any], Truth | None]]:
        while self._heap and (now is None or self._heap[0][0] <= now):
            _, _, event, truth = heapq.heappop(self._heap)
            yield event, truth


def generate(config: SimulationConfig) -> Iterator[tuple[dict[str, Any], Truth | None]]:
    rng = random.Random(config.seed)
    clock = _Clock()
    step = timedelta(hours=config.hours) / max(config.interactions, 1)
    users = [f"u-{rng.getrandbits(40):010x}" for _ in range(config.users)]
    segment_of = {u: rng.choices(SEGMENTS, weights=(6, 3, 1))[0] for u in users}
    sessions: dict[str, str] = {}
    made = 0
    i = 0
    while made < config.interactions:
        ts = config.start + step * i + timedelta(seconds=rng.random() * step.total_seconds())
        i += 1
        yield from clock.pop_until(ts)
        late = i / max(config.interactions, 1) >= config.drift_at
        chat = rng.random() < config.chat_share
        task = CHAT if chat else rng.choices(TASKS, weights=(5, 3, 2))[0]
        user = rng.choice(users)
        if chat or user not in sessions or rng.random() < 0.2:
            sessions[user] = f"s-{rng.getrandbits(48):012x}"
        if chat:
            made += _chat(rng, clock, config, user, sessions[user], segment_of[user], ts, late,
                          budget=config.interactions - made)
        else:
            made += _interaction(rng, clock, config, task, user, sessions[user], segment_of[user], ts, late,
                                 given=None).made
    yield from clock.pop_until(None)


@dataclass(frozen=True)
class _Served:
    made: int  # interactions emitted: this one, and a regeneration
    interaction_id: str
    shown: str  # the answer the user went on with: the regeneration's when they retried
    next_turn: tuple[str, str, Topic] | None  # the follow-up prompt the user sent (prompt, slot, topic)
    left: bool  # the user left (silently or explicitly): the conversation ends


def _chat(
    rng: random.Random,
    clock: _Clock,
    config: SimulationConfig,
    user: str,
    session: str,
    segment: str,
    ts: datetime,
    late: bool,
    *,
    budget: int,
) -> int:
    """One chat session of 1-4 turns; each turn's input is the conversation so far. Returns interactions made."""
    topics, weights = _mix(CHAT, late, config.drift)
    topic = rng.choices(topics, weights=weights)[0]
    slot = rng.choice(topic.slots)
    prompt = rng.choice(topic.prompts).format(slot=slot)
    has_pii = rng.random() < config.pii_rate  # the first message holds it, and so every later turn's input
    if has_pii:
        n = rng.randrange(10_000)
        prompt += rng.choice(PII_SNIPPETS).format(n=n, card=planted_card(n))
    history: list[Message] = [{"role": "system", "content": CHAT_SYSTEM.format(segment=segment)}]
    turns = min(rng.choice((1, 2, 2, 3, 3, 4)), max(1, (budget + 2) // 2))  # a turn makes at most 2
    followups = rng.sample(CHAT_FOLLOWUPS, len(CHAT_FOLLOWUPS))  # each said once per conversation
    made = 0
    for turn in range(turns):
        asked: list[Message] = [{"role": "user", "content": prompt}]
        if rng.random() < 0.25:  # the assistant looked something up before answering
            asked += [{"role": "assistant", "content": CHAT_LOOKUP},
                      {"role": "tool", "content": CHAT_TOOL_RESULT.format(topic=topic.name, slot=slot)}]
        served = _interaction(rng, clock, config, CHAT, user, session, segment, ts, late,
                              given=(prompt, slot, topic), history=history + asked, has_pii=has_pii)
        made += served.made
        history = [*history, *asked, {"role": "assistant", "content": served.shown}]
        if turn == turns - 1 or (served.left and served.next_turn is None):
            break
        if served.next_turn is not None:  # what the user typed next is the next turn (a rephrase, or a new topic)
            prompt, slot, topic = served.next_turn
        else:
            prompt = followups.pop().format(slot=slot)
        ts += timedelta(seconds=rng.uniform(60, 240))
    return made


def _interaction(
    rng: random.Random,
    clock: _Clock,
    config: SimulationConfig,
    task: Task,
    user: str,
    session: str,
    segment: str,
    ts: datetime,
    late: bool,
    *,
    given: tuple[str, str, Topic] | None,
    history: list[Message] | None = None,
    retry: bool = False,
    has_pii: bool = False,
) -> _Served:
    """Emit one interaction and the user's reactions. `given` (prompt, slot, topic) is a retried or a chat
    turn's question; `history`, a chat turn's whole input (ending with the question or a tool result);
    `has_pii`, whether that chat's first message holds planted personal data."""
    topics, weights = _mix(task, late, config.drift)
    model_id, v1, p1, v2, p2 = MODELS[task.app]
    version, p_good = (v2, p2) if (late and config.drift) else (v1, p1)
    effect = in_force(config.changes, model_id, version, p_good, ts)
    version, p_good = effect.version, effect.p_good
    if given is None:
        topic = rng.choices(topics, weights=weights)[0]
        slot = rng.choice(topic.slots)
        prompt = rng.choice(topic.prompts).format(slot=slot)
        has_pii = rng.random() < config.pii_rate
        if has_pii:
            n = rng.randrange(10_000)
            prompt += rng.choice(PII_SNIPPETS).format(n=n, card=planted_card(n))
    else:
        prompt, slot, topic = given
    if retry:
        p_good = min(0.95, p_good + 0.1)  # a regeneration is a bit likelier to be fine
    good = rng.random() < p_good
    good_text = rng.choice(topic.good).format(slot=slot)
    output = good_text if good else rng.choice(topic.bad + GENERIC_BAD).format(slot=slot)
    iid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    output = effect.alter(output, iid)
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "type": "interaction",
        "schema_version": 1,
        "ts": utc_iso(ts),
        "interaction_id": iid,
        "session_id": session,
        "user_id": user,
        "app": task.app,
        "task": task.name,
        "model": {"id": model_id, "version": version, "provider": "internal"},
        "input": {"prompt": prompt} if history is None else {"messages": [dict(m) for m in history]},
        "output": output,
        "latency_ms": int(rng.lognormvariate(6.5, 0.4)),
        "metadata": {"segment": segment, "locale": rng.choice(LOCALES)},
    }
    truth = Truth(iid, task.app, task.name, topic.name, version, good, ts, has_pii)
    clock.push(ts, event, truth)
    made = 1

    def feedback(kind: str, delay_s: float, **fields: Any) -> None:
        at = ts + timedelta(seconds=delay_s)
        ev = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "schema_version": 1,
            "ts": utc_iso(at),
            "interaction_id": iid,
            **fields,
        }
        arrival = at
        if rng.random() < config.late_rate:
            arrival = at + timedelta(minutes=rng.uniform(5, 240))  # a mobile client that was offline
        elif rng.random() < 0.05:
            arrival = ts - timedelta(seconds=rng.uniform(0.1, 2))  # overtakes its interaction
        clock.push(arrival, ev)
        if rng.random() < config.duplicate_rate:
            clock.push(arrival + timedelta(seconds=rng.uniform(0, 60)), dict(ev))

    def chance(p_if_good: float, p_if_bad: float) -> bool:
        return rng.random() < (p_if_good if good else p_if_bad)

    if rng.random() < 0.6:
        feedback("dwell", rng.uniform(5, 30), dwell_ms=int(rng.lognormvariate(10.0 if good else 8.6, 0.6)))
    shown, next_turn = output, None
    silent = not good and rng.random() < 0.3  # bad and the user just leaves: inferred later
    left = silent
    if not silent:
        if chance(0.55 * config.copy_scale, 0.08 * config.copy_scale):
            feedback("copy", rng.uniform(3, 40), chars=len(output))
        if chance(0.45, 0.06):
            feedback("accept", rng.uniform(3, 60))
        if chance(min(1.0, 0.12 * config.edit_scale), min(1.0, 0.45 * config.edit_scale)):
            kept = _edit_text(rng, output, heavy=not good, good_alternative=good_text)
            feedback("edit", rng.uniform(10, 120), text=kept)
        if chance(0.005, 0.06):
            feedback("correction", rng.uniform(20, 200), text=good_text)
        if chance(0.02, 0.12):
            feedback("abandon", rng.uniform(2, 30), reason=rng.choice(("closed_tab", "navigated_away")))
            left = True
        if chance(0.15, 0.35):
            if good:
                other = rng.choice(topics)
                other_slot = rng.choice(other.slots)
                follow = rng.choice(other.prompts).format(slot=other_slot)
                next_turn = (follow, other_slot, other)
            else:  # a rephrase of the same question
                follow = rng.choice(topic.prompts).format(slot=slot)
                if follow == prompt:
                    follow = "I mean: " + prompt.lower()
                next_turn = (follow, slot, topic)
            feedback("followup", rng.uniform(15, 90), prompt=follow)
        if not retry and chance(0.04, 0.35):
            delay = rng.uniform(2, 20)
            new_ts = ts + timedelta(seconds=delay)
            # the same input again: a chat turn is regenerated from the same conversation
            regenerated = _interaction(rng, clock, config, task, user, session, segment, new_ts, late,
                                       given=(prompt, slot, topic), history=history, retry=True,
                                       has_pii=has_pii and history is not None)
            made += regenerated.made
            shown = regenerated.shown
            next_turn = regenerated.next_turn or next_turn
            feedback("retry", delay, new_interaction_id=regenerated.interaction_id)
    if rng.random() < config.rating_rate:
        if rng.random() < 0.5:
            up = rng.random() < (0.9 if good else 0.15)
            feedback("rating", rng.uniform(5, 120), thumbs="up" if up else "down")
        else:
            base = rng.choice((4, 5)) if good else rng.choice((1, 2, 2, 3))
            feedback("rating", rng.uniform(5, 120), score=base, comment="thanks" if good else "not what I asked")
    return _Served(made, iid, shown, next_turn, left)
