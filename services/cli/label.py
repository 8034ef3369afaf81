"""Labeling: one pass (`flywheel label`) or a pass whenever the lake changes (`flywheel labeler`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated, Any

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, with_lake


def label(
    lake: LakeOption = None,
    full: Annotated[bool, typer.Option(
        "--full", "--force", help="relabel everything (a new labeling-function set, a new label model), in chunks"
    )] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run one labeler pass: what is new since the last pass (everything with --full), then the label model,
    cleanlab and routing."""
    from flywheel_feedback.services.labeler.pipeline import label_pass
    from flywheel_feedback.services.settings import LabelerSettings

    configure_logging(verbose)
    settings = with_lake(LabelerSettings(), lake)
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def on_chunk(done: int, total: int, what: str) -> None:
            """A full relabel's progress: a bar over its chunks (an incremental pass has none)."""
            if not bars:
                bars.append(stack.enter_context(typer.progressbar(length=total, label="relabeling", show_pos=True)))
            bars[0].label = f"relabeled {what}"
            bars[0].update(1)

        result = label_pass(settings.lake.open(), options=settings.options(), force=full, progress=_say(verbose),
                            on_chunk=on_chunk)
    if not result.changed:
        typer.echo(f"nothing new since snapshot {result.snapshot}; labels unchanged")
        return
    typer.echo(
        f"{result.mode} pass over {result.snapshot}: {result.interactions} interactions labeled "
        f"({result.new_events} new events), {result.gold} with human gold in the model's window, "
        f"{result.issues} label issues, queued {result.queued} in {result.seconds:.1f}s"
    )


def _say(verbose: bool) -> Callable[[str], None]:
    return typer.echo if verbose else (lambda _: None)


def labeler(lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Keep labeling: a pass whenever the lake has new events or gold labels (FLYWHEEL_LABELER_* settings)."""
    from flywheel_feedback.services.labeler.loop import run_forever
    from flywheel_feedback.services.settings import LabelerSettings

    configure_logging(verbose)
    run_forever(with_lake(LabelerSettings(), lake))
