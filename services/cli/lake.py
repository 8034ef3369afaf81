"""`flywheel lake`: looking into the lake itself."""

from __future__ import annotations

import typer

from flywheel_feedback.services.cli.common import LakeOption, open_lake

lake_app = typer.Typer(no_args_is_help=True, help="The lake: what it holds.")


@lake_app.command("events")
def lake_events(lake: LakeOption = None) -> None:
    """Count the captured events per type (deduplicated by event_id)."""
    import polars as pl

    from flywheel_feedback.services.lake.events import read_events

    frame = read_events(open_lake(lake))
    typer.echo(frame.group_by("type").agg(pl.len().alias("events")).sort("type"))
