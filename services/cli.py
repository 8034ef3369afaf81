"""The `flywheel` command. Imports are lazy so `flywheel --help` is instant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

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
def events(lake: Annotated[str, typer.Option(help="local path or s3:// URL")] = "./lake") -> None:
    """Count the captured events per type (deduplicated by event_id)."""
    import polars as pl

    from services.lake.events import read_events
    from services.settings import LakeSettings

    frame = read_events(LakeSettings(url=lake).open())
    typer.echo(frame.group_by("type").agg(pl.len().alias("events")).sort("type"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
