"""The whole loop: `flywheel demo`, `simulate`, `serve` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, open_lake, with_lake


def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its traffic and lake")] = Path("flywheel-demo"),
    interactions: Annotated[int, typer.Option(min=1)] = 20_000,
    seed: int = 7,
) -> None:
    """The whole loop with nothing else running: simulate, capture, label, queue, slice, export, report."""
    from flywheel_feedback.services.demo import run_demo

    run_demo(workdir, interactions=interactions, seed=seed)


def simulate(
    interactions: Annotated[int, typer.Option(min=1)] = 5_000,
    seed: int = 7,
    drift: Annotated[bool, typer.Option(help="shift the topic mix and model versions halfway")] = True,
    to: Annotated[str, typer.Option(help="'kafka' or a path to a JSON-lines file")] = "kafka",
    truth: Annotated[Path, typer.Option(help="where the hidden truth goes (Parquet)")] = Path("truth.parquet"),
    topic: Annotated[str | None, typer.Option(help="default: FLYWHEEL_CAPTURE_TOPIC")] = None,
) -> None:
    """Generate realistic product traffic (to Kafka or a file) and its hidden truth."""
    from flywheel_feedback.services.simulator.traffic import SimulationConfig

    config = SimulationConfig(interactions=interactions, seed=seed, drift=drift)
    if to != "kafka":
        from flywheel_feedback.services.simulator.output import simulate_to_file

        n = simulate_to_file(config, Path(to), truth)
        typer.echo(f"wrote {n} events to {to}; truth in {truth}")
        return
    from flywheel_feedback.client import Emitter
    from flywheel_feedback.services.settings import CaptureSettings
    from flywheel_feedback.services.simulator.output import simulate_to_kafka

    settings = CaptureSettings()
    topic = topic or settings.topic
    options = settings.kafka.kafka_python_options()
    with Emitter(options.pop("bootstrap_servers"), topic=topic, **options) as emitter:
        n = simulate_to_kafka(config, send=lambda v, k: emitter.send_raw(v, key=k), truth_path=truth)
    typer.echo(f"sent {n} events to {topic} at {settings.kafka.bootstrap_servers}; truth in {truth}")


def serve(lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Capture, labeler, annotation sync and slice renewal in one process, with /healthz and /metrics."""
    from flywheel_feedback.services.logs import redact_secrets_of
    from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings, serve_forever

    configure_logging(verbose)
    settings = ServeSettings()
    redact_secrets_of(settings)
    if lake is not None:  # every stage works on the one lake named
        stages = ("capture", "labeler", "annotation", "slices")
        settings = settings.model_copy(update={name: with_lake(getattr(settings, name), lake) for name in stages})
    serve_forever(FlywheelServer(settings, settings.capture.lake.open()))


def report(
    lake: LakeOption = None,
    out: Annotated[Path, typer.Option(help="where to write the HTML report")] = Path("flywheel-report.html"),
    truth: Annotated[Path | None, typer.Option(help="the simulator's truth file, to score labels")] = None,
) -> None:
    """Write the flywheel health report (HTML with plots) for any lake."""
    import polars as pl

    from flywheel_feedback.services.report.build import build_report

    path = build_report(open_lake(lake), out, truth=pl.read_parquet(truth) if truth else None)
    typer.echo(f"wrote {path}")
