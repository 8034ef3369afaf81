"""Eval slices and training exports: versioned, drift-aware, in the lake, announced on Kafka."""

from __future__ import annotations

from flywheel_feedback.services.slices.api import load_export, load_export_dataset, load_slice

__all__ = ["load_export", "load_export_dataset", "load_slice"]
