"""Posting model change alarms to a webhook (Slack-compatible `text`, and every field of each alarm)."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from typing import Any

from flywheel_feedback.labeling.changes import Alarm
from flywheel_feedback.services.errors import FlywheelError


class WebhookError(FlywheelError):
    """The alarm webhook did not accept the alarms."""


def describe(alarm: Alarm) -> str:
    s = alarm.series
    version = f"@{s['model_version']}" if s.get("model_version") else " (across versions)"
    return (f"{s.get('model_id')}{version} on {s.get('app')}/{s.get('task')}: {alarm.measure} went {alarm.direction} "
            f"from {alarm.before:.4g} to {alarm.after:.4g} (change {alarm.change:+.4g}, 95% CI "
            f"[{alarm.ci_low:+.4g}, {alarm.ci_high:+.4g}], confidence {alarm.confidence:.4f}) "
            f"around {alarm.changed_at:%Y-%m-%d %H:%M} UTC, detected {alarm.alarmed_at:%Y-%m-%d %H:%M} UTC")


def payload(alarms: list[Alarm]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {
        "text": "\n".join(f"model change: {describe(a)}" for a in alarms),
        "alarms": [{k: plain(v) for k, v in a.row().items()} for a in alarms],
    }


def post_alarms(url: str, alarms: list[Alarm], *, timeout_s: float = 10.0) -> None:
    """POST the alarms as JSON; raises WebhookError (without the URL: it may hold a token) unless 2xx."""
    if not alarms:
        return
    if not url.startswith(("http://", "https://")):
        raise WebhookError("the alarm webhook must be an http(s) URL")
    request = urllib.request.Request(url, data=json.dumps(payload(alarms)).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # the scheme is checked above
            status = answer.status
    except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
        raise WebhookError(f"the alarm webhook failed: {type(e).__name__}") from None
    if not 200 <= status < 300:
        raise WebhookError(f"the alarm webhook answered {status}")
