"""flywheel's client for product apps: the event contracts and the ways to send them.

    from flywheel_feedback.client import Emitter, new_event_id, now
    from flywheel_feedback.schemas.events import Copy, Interaction

`interaction_token` lets a browser send feedback about an interaction your server served (over HTTP, with a
publishable browser key).

Depends on pydantic and kafka-python only, so it installs into a product app without the service.
"""

from flywheel_feedback.client.emitter import DEFAULT_TOPIC, Emitter, EmitterError
from flywheel_feedback.client.helpers import new_event_id, now
from flywheel_feedback.client.tokens import interaction_token

__all__ = ["DEFAULT_TOPIC", "Emitter", "EmitterError", "interaction_token", "new_event_id", "now"]
