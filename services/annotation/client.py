"""Connecting to Argilla, and telling "Argilla is unreachable" (retry later) from "Argilla refused this".

The SDK is imported lazily: it costs ~2 s, and the CLI must stay instant.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flywheel_feedback.services.errors import FlywheelError

if TYPE_CHECKING:
    import argilla as rg

    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)


class ArgillaUnavailableError(FlywheelError, RuntimeError):
    """Argilla did not answer (connection refused or cut, timeout, 5xx): what was not confirmed stays pending."""


def connect(settings: AnnotationSettings) -> rg.Argilla:
    """An SDK client for the configured server (it calls /me once: a wrong key fails here)."""
    import argilla as rg

    if settings.api_key is None:
        raise ValueError("FLYWHEEL_ARGILLA_API_KEY is not set: the annotation sync needs an Argilla API key")
    try:
        # The SDK's transport retries only refused connects, immediately; our own retries back off.
        return rg.Argilla(
            api_url=settings.url,
            api_key=settings.api_key.get_secret_value(),
            timeout=settings.timeout_s,
            retries=1,
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise ArgillaUnavailableError(f"Argilla at {settings.url} is unreachable: {_describe(exc)}") from exc
        raise


def is_unavailable(exc: BaseException) -> bool:
    """True when the error (or what caused it) says the server was not there to answer."""
    import httpx
    from argilla._exceptions import ArgillaAPIError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ArgillaUnavailableError | httpx.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, ArgillaAPIError) and _status(current) >= 500:
            return True
        if isinstance(current, httpx.HTTPStatusError) and current.response.status_code >= 500:
            return True
        current = current.__cause__ or current.__context__
    return False


def _status(exc: Any) -> int:
    status = getattr(exc, "status_code", 0)
    return status if isinstance(status, int) else 0


def _describe(exc: BaseException) -> str:
    # Never the request itself: headers carry the API key.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
