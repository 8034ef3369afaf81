"""What the Kafka benches share: the broker of a running stack, and one realistic interaction event."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROMPT = "How do I reset my password on the mobile app? I tried twice already and the link keeps expiring. "
OUTPUT = (
    "Open Settings > Account > Reset password. The link is valid for 15 minutes, so open it on the same device "
    "right after you request it; if it expires, request a new one. "
)


def interaction(i: int, *, event_id: str, interaction_id: str) -> dict[str, object]:
    """The i-th interaction of a bench's stream (~700 bytes as JSON), with the ids the bench gives it."""
    return {
        "event_id": event_id,
        "type": "interaction",
        "schema_version": 1,
        "ts": f"2026-11-27T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "interaction_id": interaction_id,
        "session_id": f"s-{i // 10:08d}",
        "user_id": f"u-{i % 5000:06d}",
        "app": "support-bot",
        "task": "reply-draft",
        "model": {"id": "support-llm", "version": "2026-11-15", "provider": "internal"},
        "input": {"prompt": PROMPT + str(i)},
        "output": OUTPUT + str(i),
        "latency_ms": 500 + i % 700,
        "metadata": {"segment": "pro", "locale": "en-US"},
    }


def bootstrap_from_stack() -> str:
    """The broker of `deploy/stack.sh up` (.run/stack.env), or exit saying how to get one."""
    env = REPO / ".run" / "stack.env"
    for line in env.read_text().splitlines() if env.exists() else []:
        if line.startswith("FLYWHEEL_TEST_KAFKA_BOOTSTRAP="):
            return line.split("=", 1)[1].strip()
    sys.exit("no broker: pass --bootstrap or run deploy/stack.sh up")
