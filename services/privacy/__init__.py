"""Privacy: erasing a person on request (`erase_user`), and the audit of erasures."""

from __future__ import annotations

from flywheel_feedback.services.privacy.erase import Erasure, erase_user, read_erasures

__all__ = ["Erasure", "erase_user", "read_erasures"]
