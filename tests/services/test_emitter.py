from __future__ import annotations

import pytest

from flywheel_feedback.client import Emitter, EmitterError


def test_the_emitter_says_clearly_when_the_broker_is_unreachable() -> None:
    with pytest.raises(EmitterError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        Emitter("127.0.0.1:1", connect_timeout_s=2)
