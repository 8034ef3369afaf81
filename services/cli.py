"""The `flywheel` command. Imports are lazy so `flywheel --help` is instant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from flywheel_feedback.labeling.exports import Kind
    from flywheel_feedback.services.settings import AnnotationSettings, SliceSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="An event-driven feedback flywheel for AI products.")


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its traffic and lake")] = Path("flywheel-demo"),
    interactions: Annotated[int, typer.Option(min=1)] = 20_000,
    seed: int = 7,
) -> None:
    """The whole loop with nothing else running: simulate, capture, label, queue, slice, export, report."""
    from flywheel_feedback.services.demo import run_demo

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
    from flywheel_feedback.services.simulator.traffic import SimulationConfig

    config = SimulationConfig(interactions=interactions, seed=seed, drift=drift)
    if to == "kafka":
        from flywheel_feedback.client import Emitter

        from flywheel_feedback.services.settings import KafkaSettings
        from flywheel_feedback.services.simulator.output import simulate_to_kafka

        kafka = KafkaSettings()
        options = kafka.kafka_python_options()
        with Emitter(options.pop("bootstrap_servers"), topic=topic, **options) as emitter:
            n = simulate_to_kafka(config, send=lambda v, k: emitter.send_raw(v, key=k), truth_path=truth)
        typer.echo(f"sent {n} events to {topic} at {kafka.bootstrap_servers}; truth in {truth}")
    else:
        from flywheel_feedback.services.simulator.output import simulate_to_file

        n = simulate_to_file(config, Path(to), truth)
        typer.echo(f"wrote {n} events to {to}; truth in {truth}")


@app.command()
def capture(verbose: bool = False) -> None:
    """Consume events from Kafka into the lake (settings from FLYWHEEL_* environment variables)."""
    import asyncio

    from flywheel_feedback.services.capture.app import build_app
    from flywheel_feedback.services.settings import CaptureSettings

    _logging(verbose)
    settings = CaptureSettings()
    asyncio.run(build_app(settings, settings.lake.open()).run())


@app.command()
def ingest(
    path: Path,
    lake: Annotated[str, typer.Option(help="local path or s3:// URL")] = "./lake",
) -> None:
    """Capture a JSON-lines file of events into the lake (the same validation as Kafka capture)."""
    from flywheel_feedback.services.capture.file_source import capture_file
    from flywheel_feedback.services.settings import LakeSettings

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
    from flywheel_feedback.services.labeler.pipeline import label_pass
    from flywheel_feedback.services.settings import LabelerSettings

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
    from flywheel_feedback.services.labeler.loop import run_forever
    from flywheel_feedback.services.settings import LabelerSettings

    _logging(verbose)
    run_forever(LabelerSettings())


@app.command()
def serve(verbose: bool = False) -> None:
    """Capture, labeler, annotation sync and slice renewal in one process, with /healthz and /metrics."""
    from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings, serve_forever

    _logging(verbose)
    settings = ServeSettings()
    serve_forever(FlywheelServer(settings, settings.capture.lake.open()))


@app.command()
def report(
    lake: Annotated[str | None, typer.Option(help="local path or s3:// URL (default: FLYWHEEL_LAKE_URL)")] = None,
    out: Annotated[Path, typer.Option(help="where to write the HTML report")] = Path("flywheel-report.html"),
    truth: Annotated[Path | None, typer.Option(help="the simulator's truth file, to score labels")] = None,
) -> None:
    """Write the flywheel health report (HTML with plots) for any lake."""
    import polars as pl

    from flywheel_feedback.services.report.build import build_report
    from flywheel_feedback.services.settings import LakeSettings

    store = (LakeSettings() if lake is None else LakeSettings(url=lake)).open()
    path = build_report(store, out, truth=pl.read_parquet(truth) if truth else None)
    typer.echo(f"wrote {path}")


@app.command()
def events(lake: Annotated[str, typer.Option(help="local path or s3:// URL")] = "./lake") -> None:
    """Count the captured events per type (deduplicated by event_id)."""
    import polars as pl

    from flywheel_feedback.services.lake.events import read_events
    from flywheel_feedback.services.settings import LakeSettings

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
    from flywheel_feedback.services.settings import AnnotationSettings, LakeSettings

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
    from flywheel_feedback.services.annotation.layout import check_queues
    from flywheel_feedback.services.annotation.push import push

    try:
        queues = check_queues(queue) if queue else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue") from exc
    settings = _annotation_settings(lake, verbose)
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
    verbose: bool = False,
) -> None:
    """Reconcile: land every submitted response Argilla has that the lake does not (gold labels)."""
    import time

    from flywheel_feedback.services.annotation.reconcile import reconcile

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
    import signal
    import threading

    from flywheel_feedback.services.annotation.receiver import serve

    settings = _annotation_settings(lake, verbose)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update=overrides)})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the delivery in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    serve(settings.lake.open(), settings, stop=stop,
          on_ready=lambda server: typer.echo(f"receiving Argilla webhooks at {server.url}"))
    typer.echo("stopped")


# ---------------------------------------------------------------------------------------------------------------
# slices and export: eval slices and training sets for ML engineers (settings from FLYWHEEL_SLICES_* variables)

slices_app = typer.Typer(
    no_args_is_help=True, help="Eval slices: versioned, drift-aware samples of production traffic, renewed from it."
)
app.add_typer(slices_app, name="slices")
export_app = typer.Typer(
    no_args_is_help=True, help="Training sets from labeled traffic: SFT examples, preference pairs, classifier data."
)
app.add_typer(export_app, name="export")

DefinitionsOption = Annotated[
    Path | None, typer.Option(help="folder of slice definitions (default: FLYWHEEL_SLICES_DEFINITIONS_DIR)")
]
VersionOption = Annotated[int | None, typer.Option("--version", "-v", min=1, help="default: the latest")]
ToOption = Annotated[Path, typer.Option(help="local folder to copy the version into")]


def _slice_settings(lake: str | None, definitions: Path | None = None, verbose: bool = False) -> SliceSettings:
    from flywheel_feedback.services.settings import LakeSettings, SliceSettings

    _logging(verbose)
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose else logging.WARNING)
    settings = SliceSettings()
    update: dict[str, object] = {}
    if lake:
        update["lake"] = LakeSettings(url=lake)
    if definitions:
        update["definitions_dir"] = definitions
    return settings.model_copy(update=update) if update else settings


@slices_app.command("list")
def slices_list(lake: LakeOption = None, definitions: DefinitionsOption = None) -> None:
    """Slice definitions and their published versions."""
    from flywheel_feedback.services.slices.definitions import load_definitions
    from flywheel_feedback.services.slices.versions import SLICES_PREFIX, list_roots, read_manifest

    settings = _slice_settings(lake, definitions)
    store = settings.lake.open()
    defined = load_definitions(settings.definitions_dir) if settings.definitions_dir.is_dir() else {}
    published = {root.split("/", 1)[1]: (root, v) for root, v in list_roots(store, SLICES_PREFIX).items()}
    for name in sorted(set(defined) | set(published)):
        note = "" if name in defined else "  (no definition file)"
        if name not in published:
            typer.echo(f"{name:<24} nothing published yet{note}")
            continue
        root, versions = published[name]
        latest = read_manifest(store, root, versions[-1])
        typer.echo(f"{name:<24} v{versions[-1]:<3} {latest['rows']:>9} rows  created {latest['created_at']}  "
                   f"versions {versions}{note}")


@slices_app.command("show")
def slices_show(
    name: str,
    version: VersionOption = None,
    lake: LakeOption = None,
    definitions: DefinitionsOption = None,
    drift: Annotated[bool, typer.Option(help="also measure the latest version's drift from traffic now")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole manifest")] = False,
) -> None:
    """A version's manifest (its files verified against their hashes), and optionally its drift now."""
    import json

    from flywheel_feedback.services.slices.api import SLICE_ERRORS, manifest_of
    from flywheel_feedback.services.slices.build import check_drift
    from flywheel_feedback.services.slices.definitions import find_definition
    from flywheel_feedback.services.slices.report import drift_lines, manifest_lines
    from flywheel_feedback.services.slices.versions import slice_root, verify_version

    settings = _slice_settings(lake, definitions)
    store = settings.lake.open()
    try:
        manifest = manifest_of(store, name, version)
        problems = verify_version(store, slice_root(name), int(manifest["version"]))
        report = check_drift(store, find_definition(settings.definitions_dir, name)) if drift else None
    except SLICE_ERRORS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from e
    typer.echo(json.dumps(manifest, indent=2, sort_keys=True) if as_json else "\n".join(manifest_lines(manifest)))
    typer.echo("verified: every file matches its manifest" if not problems else "\n".join(problems))
    if report is not None:
        typer.echo("\n".join(drift_lines(report, label="drift now")))
    if problems:
        raise typer.Exit(code=1)


@slices_app.command("pull")
def slices_pull(name: str, version: VersionOption = None, to: ToOption = Path("."), lake: LakeOption = None) -> None:
    """Copy a version (verified) and its manifest to a local folder: <to>/slices/<name>/v<k>/."""
    from flywheel_feedback.services.slices.versions import slice_root

    _pull(slice_root(name), version, to, lake)


def _pull(root: str, version: int | None, to: Path, lake: str | None) -> None:
    from flywheel_feedback.services.slices.api import SLICE_ERRORS, pull

    store = _slice_settings(lake).lake.open()
    try:
        paths = pull(store, root, version, to)
    except SLICE_ERRORS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from e
    for path in paths:
        typer.echo(str(path))


@slices_app.command("diff")
def slices_diff(
    name: str,
    old: int,
    new: Annotated[int | None, typer.Argument(help="default: the latest version")] = None,
    lake: LakeOption = None,
    limit: Annotated[int, typer.Option(min=0, help="items listed per side")] = 20,
) -> None:
    """Items added and retired between two versions, and the rows per topic cluster of each."""
    from flywheel_feedback.services.slices.api import SLICE_ERRORS, diff
    from flywheel_feedback.services.slices.report import diff_lines
    from flywheel_feedback.services.slices.versions import resolve, slice_root

    store = _slice_settings(lake).lake.open()
    try:
        result = diff(store, name, old, resolve(store, slice_root(name), new))
    except (*SLICE_ERRORS, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from e
    typer.echo("\n".join(diff_lines(result, limit=limit)))


@slices_app.command("renew")
def slices_renew(
    names: Annotated[list[str] | None, typer.Argument(help="slices to renew (or --all)")] = None,
    all_slices: Annotated[bool, typer.Option("--all", help="every definition in the definitions folder")] = False,
    force: Annotated[bool, typer.Option(help="propose a new version even if the slice is fresh")] = False,
    dry_run: Annotated[bool, typer.Option(help="report the proposal, publish nothing")] = False,
    lake: LakeOption = None,
    definitions: DefinitionsOption = None,
    verbose: bool = False,
) -> None:
    """Measure drift and age; past a threshold, publish the next version and queue its gaps for annotators.
    A slice with no version yet gets its first."""
    from flywheel_feedback.services.slices.announce import announcer_from
    from flywheel_feedback.services.slices.api import SLICE_ERRORS
    from flywheel_feedback.services.slices.build import renew
    from flywheel_feedback.services.slices.definitions import find_definition, load_definitions
    from flywheel_feedback.services.slices.report import renewal_lines

    settings = _slice_settings(lake, definitions, verbose)
    if all_slices == bool(names):
        typer.echo("error: name the slices to renew, or pass --all", err=True)
        raise typer.Exit(code=2)
    store = settings.lake.open()
    announcer = None if dry_run else announcer_from(settings)
    failed = False
    try:
        chosen = (list(load_definitions(settings.definitions_dir).values()) if all_slices
                  else [find_definition(settings.definitions_dir, n) for n in names or []])
        for definition in chosen:
            try:
                result = renew(store, definition, force=force, dry_run=dry_run, announcer=announcer,
                               progress=typer.echo if verbose else None)
            except SLICE_ERRORS as e:
                typer.echo(f"{definition.name}: error: {e}", err=True)
                failed = True
                continue
            typer.echo("\n".join(renewal_lines(result)))
            failed = failed or result.announce_error is not None
    except SLICE_ERRORS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from e
    finally:
        if announcer is not None:
            announcer.close()
    if failed:
        raise typer.Exit(code=1)


@slices_app.command("announce")
def slices_announce(lake: LakeOption = None, verbose: bool = False) -> None:
    """Announce on Kafka every published slice and export version not yet announced (after an outage)."""
    from flywheel_feedback.services.slices.announce import KafkaAnnouncer, announce_pending

    settings = _slice_settings(lake, verbose=verbose)
    with KafkaAnnouncer(settings.kafka, topic=settings.announce_topic, timeout_s=settings.announce_timeout_s) as sender:
        events = announce_pending(settings.lake.open(), sender)
    for event in events:
        typer.echo(f"announced {event['type']} {event['name']} v{event['version']} on {settings.announce_topic}")
    typer.echo(f"{len(events)} announced")


def _export(kind: Kind, *, tasks: list[str] | None, min_confidence: float, include_eval: bool, dry_run: bool,
            lake: str | None, verbose: bool) -> None:
    from flywheel_feedback.services.slices.announce import announcer_from
    from flywheel_feedback.services.slices.api import SLICE_ERRORS
    from flywheel_feedback.services.slices.exports import export

    settings = _slice_settings(lake, verbose=verbose)
    announcer = None if dry_run else announcer_from(settings)
    try:
        result = export(settings.lake.open(), kind, tasks=tasks or (), min_confidence=min_confidence,
                        exclude_slices=not include_eval, dry_run=dry_run, announcer=announcer)
    except SLICE_ERRORS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from e
    finally:
        if announcer is not None:
            announcer.close()
    manifest = result.manifest or {}
    verb = "published" if result.published else "would publish (dry run)"
    typer.echo(f"{kind} v{result.version} {verb}: {result.rows} records {manifest.get('counts', {})}; "
               f"held out {manifest.get('excluded_interactions', 0)} eval items {manifest.get('excluded_slices', {})}; "
               f"{result.seconds:.1f}s")
    if result.published:
        typer.echo(f"  content hash {manifest.get('content_hash')}")
    if result.announce_error:
        typer.echo(f"  announcement pending ({result.announce_error}); `flywheel slices announce` retries", err=True)
        raise typer.Exit(code=1)


TasksOption = Annotated[list[str] | None, typer.Option("--task", help="only these tasks (repeatable)")]
MinConfidenceOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="weak labels below this are left out")]
IncludeEvalOption = Annotated[bool, typer.Option(help="keep items of the latest eval slices (held out by default)")]


@export_app.command("sft")
def export_sft(tasks: TasksOption = None, min_confidence: MinConfidenceOption = 0.8,
               include_eval: IncludeEvalOption = False, dry_run: bool = False, lake: LakeOption = None,
               verbose: bool = False) -> None:
    """SFT examples: input -> the corrected, edited or accepted output (chat-format JSONL and Parquet)."""
    _export("sft", tasks=tasks, min_confidence=min_confidence, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("preference")
def export_preference(tasks: TasksOption = None, include_eval: IncludeEvalOption = False, dry_run: bool = False,
                      lake: LakeOption = None, verbose: bool = False) -> None:
    """Preference pairs: chosen = the user's edit, correction or used regeneration; rejected = the original."""
    _export("preference", tasks=tasks, min_confidence=1.0, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("classifier")
def export_classifier(tasks: TasksOption = None, min_confidence: MinConfidenceOption = 0.8,
                      include_eval: IncludeEvalOption = False, dry_run: bool = False, lake: LakeOption = None,
                      verbose: bool = False) -> None:
    """Classifier data: text, label, confidence (human gold and confident weak labels)."""
    _export("classifier", tasks=tasks, min_confidence=min_confidence, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("list")
def export_list(lake: LakeOption = None) -> None:
    """Published training exports."""
    from flywheel_feedback.services.slices.versions import EXPORTS_PREFIX, list_roots, read_manifest

    store = _slice_settings(lake).lake.open()
    for root, versions in list_roots(store, EXPORTS_PREFIX).items():
        latest = read_manifest(store, root, versions[-1])
        typer.echo(f"{root:<24} v{versions[-1]:<3} {latest['rows']:>9} rows  created {latest['created_at']}  "
                   f"versions {versions}")


@export_app.command("pull")
def export_pull(kind: str, version: VersionOption = None, to: ToOption = Path("."), lake: LakeOption = None) -> None:
    """Copy an export version (verified) and its manifest to a local folder: <to>/exports/<kind>/v<k>/."""
    from flywheel_feedback.services.slices.versions import export_root

    _pull(export_root(kind), version, to, lake)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
