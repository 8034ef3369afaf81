"""The `flywheel` command. Imports are lazy so `flywheel --help` is instant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from services.settings import AnnotationSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="An event-driven feedback flywheel for AI products.")


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its traffic and lake")] = Path("flywheel-demo"),
    interactions: Annotated[int, typer.Option(min=1)] = 5_000,
    seed: int = 7,
) -> None:
    """Run the loop end to end with nothing else running: simulate, capture into a local lake."""
    from services.demo import run_demo

    run_demo(workdir, interactions=interactions, seed=seed)


@app.command()
def simulate(
    interactions: Annotated[int, typer.Option(min=1)] = 5_000,
    seed: int = 7,
    drift: Annotated[bool, typer.Option(help="shift the topic mix and model versions halfway")] = True,
    to: Annotated[str, typer.Option(help="'kafka' or a path to a JSON-lines file")] = "kafka",
    truth: Annotated[Path, typer.Option(help="where the hidden truth goes (Parquet)")] = Path("truth.parquet"),
    topic: str = "flywheel.events",
) -> None:
    """Generate realistic product traffic (to Kafka or a file) and its hidden truth."""
    from services.simulator.traffic import SimulationConfig

    config = SimulationConfig(interactions=interactions, seed=seed, drift=drift)
    if to == "kafka":
        from services.emitter import Emitter
        from services.settings import KafkaSettings
        from services.simulator.output import simulate_to_kafka

        kafka = KafkaSettings()
        options = kafka.kafka_python_options()
        with Emitter(options.pop("bootstrap_servers"), topic=topic, **options) as emitter:
            n = simulate_to_kafka(config, send=lambda v, k: emitter.send_raw(v, key=k), truth_path=truth)
        typer.echo(f"sent {n} events to {topic} at {kafka.bootstrap_servers}; truth in {truth}")
    else:
        from services.simulator.output import simulate_to_file

        n = simulate_to_file(config, Path(to), truth)
        typer.echo(f"wrote {n} events to {to}; truth in {truth}")


@app.command()
def capture(verbose: bool = False) -> None:
    """Consume events from Kafka into the lake (settings from FLYWHEEL_* environment variables)."""
    import asyncio

    from services.capture.app import build_app
    from services.settings import CaptureSettings

    _logging(verbose)
    settings = CaptureSettings()
    asyncio.run(build_app(settings, settings.lake.open()).run())


@app.command()
def ingest(
    path: Path,
    lake: Annotated[str, typer.Option(help="local path or s3:// URL")] = "./lake",
) -> None:
    """Capture a JSON-lines file of events into the lake (the same validation as Kafka capture)."""
    from services.capture.file_source import capture_file
    from services.settings import LakeSettings

    result = capture_file(path, LakeSettings(url=lake).open())
    typer.echo(f"accepted {result.accepted}, rejected {result.rejected}")
    for reason in result.reasons[:20]:
        typer.echo(f"  - {reason}")


@app.command()
def label(
    lake: Annotated[str | None, typer.Option(help="local path or s3:// URL (default: FLYWHEEL_LAKE_URL)")] = None,
    force: Annotated[bool, typer.Option(help="relabel even if the lake has not changed")] = False,
    verbose: bool = False,
) -> None:
    """Run one labeler pass: features, labeling functions, label model, cleanlab, routing."""
    from services.labeler.pipeline import label_pass
    from services.settings import LabelerSettings

    _logging(verbose)
    settings = LabelerSettings() if lake is None else LabelerSettings(lake={"url": lake})
    result = label_pass(settings.lake.open(), options=settings.options(), force=force, progress=typer.echo)
    if not result.changed:
        typer.echo(f"nothing new since snapshot {result.snapshot}; labels unchanged")
        return
    typer.echo(
        f"labeled {result.interactions} interactions ({result.covered} with a signal, {result.gold} with human gold), "
        f"{result.issues} label issues, queued {result.queued} in {result.seconds:.1f}s"
    )


@app.command()
def labeler(verbose: bool = False) -> None:
    """Keep labeling: a pass whenever the lake has new events or gold labels (FLYWHEEL_LABELER_* settings)."""
    from services.labeler.loop import run_forever
    from services.settings import LabelerSettings

    _logging(verbose)
    run_forever(LabelerSettings())


@app.command()
def events(lake: Annotated[str, typer.Option(help="local path or s3:// URL")] = "./lake") -> None:
    """Count the captured events per type (deduplicated by event_id)."""
    import polars as pl

    from services.lake.events import read_events
    from services.settings import LakeSettings

    frame = read_events(LakeSettings(url=lake).open())
    typer.echo(frame.group_by("type").agg(pl.len().alias("events")).sort("type"))


# ---------------------------------------------------------------------------------------------------------------
# annotate: the Argilla queues (settings from FLYWHEEL_ARGILLA_* and FLYWHEEL_WEBHOOK_* variables)

annotate_app = typer.Typer(
    no_args_is_help=True, help="Annotator queues in Argilla: push the outbox, take the answers back as gold labels."
)
app.add_typer(annotate_app, name="annotate")

LakeOption = Annotated[str | None, typer.Option(help="local path or s3:// URL (default: FLYWHEEL_LAKE_URL)")]


def _annotation_settings(lake: str | None, verbose: bool) -> AnnotationSettings:
    from services.settings import AnnotationSettings, LakeSettings

    _logging(verbose)
    if not verbose:
        # The SDK and httpx log every request at INFO; progress lines say what matters.
        for name in ("httpx", "argilla.sdk"):
            logging.getLogger(name).setLevel(logging.WARNING)

    settings = AnnotationSettings()
    return settings.model_copy(update={"lake": LakeSettings(url=lake)}) if lake else settings


@annotate_app.command("push")
def annotate_push(
    lake: LakeOption = None,
    queue: Annotated[list[str] | None, typer.Option(help="only these queues (repeatable)")] = None,
    resend: Annotated[bool, typer.Option(help="send every outbox item again (updates, never duplicates)")] = False,
    verbose: bool = False,
) -> None:
    """Send the pending outbox to Argilla: a dataset per queue; items are marked sent once Argilla confirms."""
    from services.annotation.push import push

    settings = _annotation_settings(lake, verbose)
    result = push(settings.lake.open(), settings, queues=queue, resend=resend, progress=typer.echo)
    rate = result.sent / result.seconds if result.seconds else 0.0
    typer.echo(f"sent {result.sent} records in {result.seconds:.1f}s ({rate:.0f}/s); {result.pending} pending")
    if result.error:
        typer.echo(f"incomplete: {result.error}; run it again once Argilla is back", err=True)
        raise typer.Exit(code=1)


@annotate_app.command("pull")
def annotate_pull(
    lake: LakeOption = None,
    every: Annotated[float | None, typer.Option(help="repeat every N seconds (default: once)")] = None,
    verbose: bool = False,
) -> None:
    """Reconcile: land every submitted response Argilla has that the lake does not (gold labels)."""
    import time

    from services.annotation.reconcile import reconcile

    settings = _annotation_settings(lake, verbose)
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
    verbose: bool = False,
) -> None:
    """Receive Argilla's signed webhooks into gold labels, and reconcile periodically (a missed webhook)."""
    from services.annotation.receiver import serve

    settings = _annotation_settings(lake, verbose)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update=overrides)})
    serve(settings.lake.open(), settings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
