"""Logging for the entry points: secrets redacted from every line whatever logged it, noisy libraries at WARNING,
repeated lines rate-limited, and JSON lines for log shippers (FLYWHEEL_LOG_FORMAT=json).

Secrets are known by value: every SecretStr of a process's settings is registered (`redact_secrets_of`), and a
filter on the root handlers replaces each with `[redacted]` in the formatted message of any record, so a
library that prints an object holding a secret (the Argilla SDK's webhook repr, httpx's request lines) cannot
leak it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, SecretStr

REDACTED = "[redacted]"
# Libraries that log at INFO what an operator does not need (and sometimes what they must not see).
QUIET_LIBRARIES: Sequence[str] = (
    "httpx", "httpcore", "argilla", "argilla.sdk", "kafka", "aiokafka", "faststream.access", "urllib3", "botocore",
    "presidio-analyzer", "uvicorn.access",
)
REPEAT_WINDOW_S = 10.0
REPEAT_LIMIT = 5  # the same message more often than this per window is summarised, not repeated


class SecretRedactor(logging.Filter):
    """Replaces registered secret values in every record that passes through."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(v for v in values if len(v) >= 4)  # shorter values would redact ordinary text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        text = record.exc_text or ""
        if record.exc_info and not text:
            text = logging.Formatter().formatException(record.exc_info)
        cleaned, cleaned_exc = message, text
        for secret in sorted(self._secrets, key=len, reverse=True):
            cleaned = cleaned.replace(secret, REDACTED)
            cleaned_exc = cleaned_exc.replace(secret, REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if cleaned_exc != text:
            record.exc_info, record.exc_text = None, cleaned_exc
        return True


class RepeatLimiter(logging.Filter):
    """Lets a message (by logger, level and template) through REPEAT_LIMIT times per window; then one line says
    how many were held back."""

    def __init__(self, *, window_s: float = REPEAT_WINDOW_S, limit: int = REPEAT_LIMIT) -> None:
        super().__init__()
        self._window_s, self._limit = window_s, limit
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            started, count = self._seen.get(key, (now, 0))
            if now - started > self._window_s:
                if count > self._limit:
                    record.msg = f"{record.msg} (and {count - self._limit} more like it in {self._window_s:.0f}s)"
                started, count = now, 0
            self._seen[key] = (started, count + 1)
        return count < self._limit


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(line, ensure_ascii=False)


_REDACTOR = SecretRedactor()


def configure(verbose: bool = False, *, log_format: str | None = None) -> None:
    """Root logging for an entry point (called once, from main)."""
    chosen = (log_format or os.environ.get("FLYWHEEL_LOG_FORMAT") or "text").lower()
    if chosen not in ("text", "json"):
        raise ValueError(f"expected FLYWHEEL_LOG_FORMAT to be 'text' or 'json', got {chosen!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatLimiter())
    handler.addFilter(_REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    redact_environment()


def redact_secrets_of(*settings: BaseModel) -> None:
    """Register every SecretStr value in these settings (nested models included) for redaction."""
    _REDACTOR.add(secret_values(settings))


def redact(*values: str) -> None:
    """Register secret values learnt at run time (e.g. a webhook's signing secret) for redaction."""
    _REDACTOR.add(values)


# Credentials that reach a process by environment rather than through its settings (boto3's, for one).
_SECRET_NAMES = re.compile(r"^(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|FLYWHEEL_.*(SECRET|PASSWORD|API_KEY|TOKEN).*)$")


def redact_environment() -> None:
    """Register the secret-looking variables of the environment for redaction."""
    _REDACTOR.add(v for k, v in os.environ.items() if _SECRET_NAMES.match(k))


def redactor() -> SecretRedactor:
    """The filter `configure` installs (to add to other handlers, e.g. a test's)."""
    return _REDACTOR


def secret_values(models: Iterable[Any]) -> list[str]:
    found: list[str] = []
    for model in models:
        if isinstance(model, SecretStr):
            found.append(model.get_secret_value())
        elif isinstance(model, BaseModel):
            found += secret_values(getattr(model, name) for name in type(model).model_fields)
        elif isinstance(model, dict):
            found += secret_values(model.values())
        elif isinstance(model, list | tuple):
            found += secret_values(model)
    return found
