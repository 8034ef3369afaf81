"""`flywheel labeler`: a labeler pass whenever the lake changed, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.settings import LabelerSettings

log = logging.getLogger(__name__)


def run_forever(settings: LabelerSettings, *, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current pass, then stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    store = settings.lake.open()
    options = settings.options()
    log.info("labeler watching %s every %.0fs", store.url, settings.interval_s)
    while not stop.is_set():
        try:
            result = label_pass(store, options=options)
            if result.changed:
                log.info("pass over snapshot %s: %d interactions, queued %s", result.snapshot,
                         result.interactions, result.queued)
        except Exception:
            # an unreachable lake or a bad file must not end the process: the next pass retries
            log.exception("labeler pass failed; retrying in %.0fs", settings.interval_s)
        stop.wait(settings.interval_s)
