"""Labeling: one pass (`flywheel label`) or a pass whenever the lake changes (`flywheel labeler`)."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, with_lake


def label(
    lake: LakeOption = None,
    force: Annotated[bool, typer.Option(help="relabel even if the lake has not changed")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run one labeler pass: features, labeling functions, label model, cleanlab, routing."""
    from flywheel_feedback.services.labeler.pipeline import label_pass
    from flywheel_feedback.services.settings import LabelerSettings

    configure_logging(verbose)
    settings = with_lake(LabelerSettings(), lake)
    result = label_pass(settings.lake.open(), options=settings.options(), force=force, progress=typer.echo)
    if not result.changed:
        typer.echo(f"nothing new since snapshot {result.snapshot}; labels unchanged")
        return
    typer.echo(
        f"labeled {result.interactions} interactions ({result.covered} with a signal, {result.gold} with human gold), "
        f"{result.issues} label issues, queued {result.queued} in {result.seconds:.1f}s"
    )


def labeler(lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Keep labeling: a pass whenever the lake has new events or gold labels (FLYWHEEL_LABELER_* settings)."""
    from flywheel_feedback.services.labeler.loop import run_forever
    from flywheel_feedback.services.settings import LabelerSettings

    configure_logging(verbose)
    run_forever(with_lake(LabelerSettings(), lake))
