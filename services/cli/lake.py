"""`flywheel lake`: looking into the lake itself, and keeping it in shape."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, open_lake

lake_app = typer.Typer(no_args_is_help=True, help="The lake: what it holds, and its maintenance.")


@lake_app.command("events")
def lake_events(lake: LakeOption = None) -> None:
    """Count the captured events per type (deduplicated by event_id)."""
    import polars as pl

    from flywheel_feedback.services.lake.events import read_events

    frame = read_events(open_lake(lake))
    typer.echo(frame.group_by("type").agg(pl.len().alias("events")).sort("type"))


@lake_app.command("optimize")
def lake_optimize(
    lake: LakeOption = None,
    retention: Annotated[
        str | None,
        typer.Option(help="keep what versions this recent need, e.g. 7d, 36h (default: FLYWHEEL_MAINTENANCE_RETENTION"
                          ", else 7d)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="allow a retention below the 1d floor (only while no writer runs)")
    ] = False,
    table: Annotated[
        list[str] | None, typer.Option(help="only this table (repeatable; default: every table of the lake)")
    ] = None,
) -> None:
    """Expire what the data retention no longer keeps (FLYWHEEL_MAINTENANCE_RAW_EVENTS_TTL, _DEAD_LETTERS_TTL,
    _GOLD_TTL), then compact small files, vacuum unreferenced ones and checkpoint the log, for every Delta table."""
    from flywheel_feedback.services.lake.maintenance import optimize_lake
    from flywheel_feedback.services.settings import MaintenanceSettings, parse_duration

    settings = MaintenanceSettings()
    if retention is None:
        span, force = settings.retention, force or settings.force
    else:
        try:
            span = parse_duration(retention)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--retention") from None
    result = optimize_lake(
        open_lake(lake), retention=span, force=force, tables=table, policy=settings.policy(),
        on_table=lambda report: typer.echo(report.summary()), on_expired=lambda item: typer.echo(item.summary()),
    )
    typer.echo(result.summary())
    if result.failed:
        raise typer.Exit(code=1)
