"""The `flywheel` command, one module per command group. Imports are lazy so `flywheel --help` is instant."""

from __future__ import annotations

import typer

from flywheel_feedback.services.cli import capture, label, run
from flywheel_feedback.services.cli.annotate import annotate_app
from flywheel_feedback.services.cli.common import GuardedGroup
from flywheel_feedback.services.cli.export import export_app
from flywheel_feedback.services.cli.gateway import gateway
from flywheel_feedback.services.cli.lake import lake_app
from flywheel_feedback.services.cli.models import models_app
from flywheel_feedback.services.cli.privacy import privacy_app
from flywheel_feedback.services.cli.slices import slices_app

app = typer.Typer(
    cls=GuardedGroup, no_args_is_help=True, add_completion=False,
    help="An event-driven feedback flywheel for AI products.",
)
for command in (run.demo, run.simulate, capture.capture, capture.ingest, gateway, label.label, label.labeler,
                run.serve, run.report):
    app.command()(command)
app.add_typer(annotate_app, name="annotate")
app.add_typer(slices_app, name="slices")
app.add_typer(export_app, name="export")
app.add_typer(lake_app, name="lake")
app.add_typer(models_app, name="models")
app.add_typer(privacy_app, name="privacy")


def main() -> None:
    app()
