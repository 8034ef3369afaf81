"""Getting events into the lake: `flywheel capture` (from Kafka) and `flywheel ingest` (from a file)."""

from __future__ import annotations

from pathlib import Path

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, open_lake, with_lake


def capture(lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Consume events from Kafka into the lake (settings from FLYWHEEL_CAPTURE_* and FLYWHEEL_KAFKA_*)."""
    import asyncio

    from flywheel_feedback.services.capture.app import build_app
    from flywheel_feedback.services.settings import CaptureSettings

    configure_logging(verbose)
    settings = with_lake(CaptureSettings(), lake)
    asyncio.run(build_app(settings, settings.lake.open()).run())


def ingest(path: Path, lake: LakeOption = None) -> None:
    """Capture a JSON-lines file of events into the lake (the same validation as Kafka capture)."""
    from flywheel_feedback.services.capture.file_source import capture_file

    result = capture_file(path, open_lake(lake))
    typer.echo(f"accepted {result.accepted}, rejected {result.rejected}")
    for reason in result.reasons[:20]:
        typer.echo(f"  - {reason}")
