"""Model changes injected into simulated traffic: silent provider-side changes and migrations.

A `ModelChange` says that from `at` on, the model `model_id` behaves differently: a share of its
outputs wrapped in markdown fences, outputs longer by a factor, a lower chance of a good output,
more refusals. With `new_version` set it is a migration (the version string changes with the
behaviour); without, it is a silent change (same version string, different behaviour).

The draws for an altered output come from a generator seeded by the interaction id, so traffic
without changes, and everything else in traffic with changes, stays as the main seed made it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

FILLER = (
    " Let me know if there is anything else I can help you with.",
    " I hope this helps; feel free to ask a follow-up question.",
    " If the problem persists, please share more details.",
)
REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass(frozen=True)
class ModelChange:
    model_id: str
    at: datetime
    new_version: str | None = None
    fence_share: float = 0.0
    length_factor: float = 1.0
    good_delta: float = 0.0
    refusal_share: float = 0.0


@dataclass(frozen=True)
class Effect:
    """What the changes in force make of one interaction."""

    version: str
    p_good: float
    changes: tuple[ModelChange, ...]

    def alter(self, output: str, interaction_id: str) -> str:
        rng = random.Random(interaction_id)
        for change in self.changes:
            if rng.random() < change.refusal_share:
                output = REFUSAL
            if change.length_factor != 1.0:
                output = _longer(output, change.length_factor, rng)
            if rng.random() < change.fence_share:
                output = f"```\n{output}\n```"
        return output


def in_force(changes: tuple[ModelChange, ...], model_id: str, version: str, p_good: float, ts: datetime) -> Effect:
    """The version and chance of a good output for `model_id` at `ts`, and the changes that alter its output."""
    active = tuple(c for c in changes if c.model_id == model_id and ts >= c.at)
    for change in active:
        if change.new_version is not None:
            version = change.new_version
        p_good = min(0.99, max(0.01, p_good + change.good_delta))
    return Effect(version, p_good, active)


def _longer(output: str, factor: float, rng: random.Random) -> str:
    target = round(len(output) * factor)
    longer = output
    while len(longer) < target:
        longer += rng.choice(FILLER)
    return longer[:target]
