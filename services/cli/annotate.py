"""`flywheel annotate`: the Argilla queues (settings from FLYWHEEL_ARGILLA_* and FLYWHEEL_WEBHOOK_*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, with_lake

if TYPE_CHECKING:
    from flywheel_feedback.services.settings import AnnotationSettings

annotate_app = typer.Typer(
    no_args_is_help=True, help="Annotator queues in Argilla: push the outbox, take the answers back as gold labels."
)


def _settings(lake: str | None, verbose: bool) -> AnnotationSettings:
    from flywheel_feedback.services.settings import AnnotationSettings

    configure_logging(verbose)
    settings: AnnotationSettings = with_lake(AnnotationSettings(), lake)
    return settings


@annotate_app.command("push")
def annotate_push(
    lake: LakeOption = None,
    queue: Annotated[list[str] | None, typer.Option(help="only these queues (repeatable)")] = None,
    resend: Annotated[bool, typer.Option(help="send every outbox item again (updates, never duplicates)")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Send the pending outbox to Argilla: a dataset per queue; items are marked sent once Argilla confirms."""
    from flywheel_feedback.services.annotation.layout import check_queues
    from flywheel_feedback.services.annotation.push import push

    try:
        queues = check_queues(queue) if queue else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue") from exc
    settings = _settings(lake, verbose)
    result = push(settings.lake.open(), settings, queues=queues, resend=resend, progress=typer.echo)
    rate = result.sent / result.seconds if result.seconds else 0.0
    typer.echo(f"sent {result.sent} records in {result.seconds:.1f}s ({rate:.0f}/s); {result.pending} pending")
    if result.error:
        typer.echo(f"incomplete: {result.error}; run it again once Argilla is back", err=True)
        raise typer.Exit(code=1)


@annotate_app.command("pull")
def annotate_pull(
    lake: LakeOption = None,
    every: Annotated[float | None, typer.Option(help="repeat every N seconds (default: once)")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Reconcile: land every submitted response Argilla has that the lake does not (gold labels)."""
    import time

    from flywheel_feedback.services.annotation.reconcile import reconcile

    settings = _settings(lake, verbose)
    store = settings.lake.open()
    while True:
        result = reconcile(store, settings, progress=typer.echo)
        typer.echo(f"{result.seen} submitted responses in Argilla, {result.landed} new in the lake")
        if result.error:
            typer.echo(f"incomplete: {result.error}", err=True)
            if every is None:
                raise typer.Exit(code=1)
        if every is None:
            return
        time.sleep(every)


@annotate_app.command("serve")
def annotate_serve(
    lake: LakeOption = None,
    host: Annotated[str | None, typer.Option(help="default: FLYWHEEL_WEBHOOK_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: FLYWHEEL_WEBHOOK_PORT")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Receive Argilla's signed webhooks into gold labels, and reconcile periodically (a missed webhook)."""
    import signal
    import threading

    from flywheel_feedback.services.annotation.receiver import serve

    settings = _settings(lake, verbose)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update=overrides)})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the delivery in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    serve(settings.lake.open(), settings, stop=stop,
          on_ready=lambda server: typer.echo(f"receiving Argilla webhooks at {server.url}"))
    typer.echo("stopped")
