"""What product code needs to build events: a fresh event id and an aware timestamp."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_event_id() -> str:
    """A random UUID: unique per event, so readers can drop what a producer sent twice."""
    return str(uuid.uuid4())


def now() -> datetime:
    """The current time in UTC, time zone attached (the contracts refuse naive timestamps)."""
    return datetime.now(UTC)
