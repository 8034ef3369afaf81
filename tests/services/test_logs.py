"""Entry-point logging: secrets never reach a log line, whoever logs them; repeated lines are summarised; JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, SecretStr

from flywheel_feedback.services import logs


class Inner(BaseModel):
    api_key: SecretStr


class Outer(BaseModel):
    password: SecretStr | None
    inner: Inner
    name: str = "plain"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_of_settings_are_redacted_from_library_lines_and_tracebacks(
    capsys: pytest.CaptureFixture[str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_WEBHOOK_SECRET", "whsec-from-the-environment")
    logs.configure()
    logs.redact_secrets_of(Outer(password=SecretStr("hunter2-long"), inner=Inner(api_key=SecretStr("owner.k3y"))))
    logs.redact("whsec-learnt-at-run-time")
    logging.getLogger("argilla.sdk").warning("Webhook(url=..., secret=%r)", "whsec-learnt-at-run-time")
    logging.getLogger("httpx").error("POST with key owner.k3y and password hunter2-long")
    logging.getLogger("some.lib").warning("env %s", "whsec-from-the-environment")
    try:
        raise RuntimeError("connect failed for owner.k3y")
    except RuntimeError:
        logging.getLogger("flywheel").exception("boom")
    logging.getLogger("httpx").info("an INFO line of a quiet library")
    out = capsys.readouterr().err
    for secret in ("hunter2-long", "owner.k3y", "whsec-learnt-at-run-time", "whsec-from-the-environment"):
        assert secret not in out
    assert out.count(logs.REDACTED) >= 5 and "RuntimeError" in out
    assert "quiet library" not in out  # library loggers at WARNING by default


def test_a_message_repeated_in_a_burst_is_summarised(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    logs.configure()
    for _ in range(50):
        logging.getLogger("kafka.conn").error("broker %s unreachable", "127.0.0.1:9")
    lines = [line for line in capsys.readouterr().err.splitlines() if "unreachable" in line]
    assert len(lines) == logs.REPEAT_LIMIT


def test_json_lines_for_log_shippers(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    logs.configure(log_format="json")
    logging.getLogger("flywheel.test").warning("hello %s", "world")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "hello world" and line["level"] == "WARNING" and line["logger"] == "flywheel.test"
    with pytest.raises(ValueError, match="FLYWHEEL_LOG_FORMAT"):
        logs.configure(log_format="xml")
