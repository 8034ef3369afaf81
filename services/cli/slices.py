"""`flywheel slices`: eval slices for ML engineers (settings from FLYWHEEL_SLICES_*)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, lake_settings

if TYPE_CHECKING:
    from flywheel_feedback.services.settings import SliceSettings

slices_app = typer.Typer(
    no_args_is_help=True, help="Eval slices: versioned, drift-aware samples of production traffic, renewed from it."
)

DefinitionsOption = Annotated[
    Path | None, typer.Option(help="folder of slice definitions (default: FLYWHEEL_SLICES_DEFINITIONS_DIR)")
]
VersionOption = Annotated[int | None, typer.Option("--version", "-v", min=1, help="default: the latest")]
ToOption = Annotated[Path, typer.Option(help="local folder to copy the version into")]


def slice_settings(lake: str | None, definitions: Path | None = None, verbose: bool = False) -> SliceSettings:
    """Slice settings from the environment, with what the command line named instead."""
    from flywheel_feedback.services.settings import SliceSettings

    configure_logging(verbose)
    settings = SliceSettings()
    update: dict[str, object] = {}
    if lake:
        update["lake"] = lake_settings(lake)
    if definitions:
        update["definitions_dir"] = definitions
    return settings.model_copy(update=update) if update else settings


@slices_app.command("list")
def slices_list(lake: LakeOption = None, definitions: DefinitionsOption = None) -> None:
    """Slice definitions and their published versions."""
    from flywheel_feedback.services.slices.definitions import load_definitions
    from flywheel_feedback.services.slices.versions import SLICES_PREFIX, list_roots, read_manifest

    settings = slice_settings(lake, definitions)
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

    from flywheel_feedback.services.slices.api import manifest_of
    from flywheel_feedback.services.slices.build import check_drift
    from flywheel_feedback.services.slices.definitions import find_definition
    from flywheel_feedback.services.slices.report import drift_lines, manifest_lines
    from flywheel_feedback.services.slices.versions import slice_root, verify_version

    settings = slice_settings(lake, definitions)
    store = settings.lake.open()
    manifest = manifest_of(store, name, version)
    problems = verify_version(store, slice_root(name), int(manifest["version"]))
    report = check_drift(store, find_definition(settings.definitions_dir, name)) if drift else None
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

    pull_version(slice_root(name), version, to, lake)


def pull_version(root: str, version: int | None, to: Path, lake: str | None) -> None:
    """Copy one version of a slice or export root to a local folder (`slices pull`, `export pull`)."""
    from flywheel_feedback.services.slices.api import pull

    for path in pull(slice_settings(lake).lake.open(), root, version, to):
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
    from flywheel_feedback.services.slices.api import diff
    from flywheel_feedback.services.slices.report import diff_lines
    from flywheel_feedback.services.slices.versions import resolve, slice_root

    store = slice_settings(lake).lake.open()
    try:
        result = diff(store, name, old, resolve(store, slice_root(name), new))
    except ValueError as e:  # two versions that cannot be compared
        raise typer.BadParameter(str(e)) from e
    typer.echo("\n".join(diff_lines(result, limit=limit)))


@slices_app.command("renew")
def slices_renew(
    names: Annotated[list[str] | None, typer.Argument(help="slices to renew (or --all)")] = None,
    all_slices: Annotated[bool, typer.Option("--all", help="every definition in the definitions folder")] = False,
    force: Annotated[bool, typer.Option(help="propose a new version even if the slice is fresh")] = False,
    dry_run: Annotated[bool, typer.Option(help="report the proposal, publish nothing")] = False,
    lake: LakeOption = None,
    definitions: DefinitionsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Measure drift and age; past a threshold, publish the next version and queue its gaps for annotators.
    A slice with no version yet gets its first."""
    from flywheel_feedback.services.errors import FlywheelError
    from flywheel_feedback.services.slices.announce import announcer_from
    from flywheel_feedback.services.slices.build import renew
    from flywheel_feedback.services.slices.definitions import find_definition, load_definitions
    from flywheel_feedback.services.slices.report import renewal_lines

    if all_slices == bool(names):
        raise typer.BadParameter("name the slices to renew, or pass --all")
    settings = slice_settings(lake, definitions, verbose)
    store = settings.lake.open()
    chosen = (list(load_definitions(settings.definitions_dir).values()) if all_slices
              else [find_definition(settings.definitions_dir, n) for n in names or []])
    announcer = None if dry_run else announcer_from(settings)
    failed = False
    try:
        for definition in chosen:
            try:
                result = renew(store, definition, force=force, dry_run=dry_run, announcer=announcer,
                               progress=typer.echo if verbose else None)
            except FlywheelError as e:  # one slice's failure does not stop the others
                typer.echo(f"{definition.name}: error: {e}", err=True)
                failed = True
                continue
            typer.echo("\n".join(renewal_lines(result)))
            failed = failed or result.announce_error is not None
    finally:
        if announcer is not None:
            announcer.close()
    if failed:
        raise typer.Exit(code=1)


@slices_app.command("announce")
def slices_announce(lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Announce on Kafka every published slice and export version not yet announced (after an outage)."""
    from flywheel_feedback.services.slices.announce import KafkaAnnouncer, announce_pending

    settings = slice_settings(lake, verbose=verbose)
    with KafkaAnnouncer(settings.kafka, topic=settings.announce_topic, timeout_s=settings.announce_timeout_s) as sender:
        events = announce_pending(settings.lake.open(), sender)
    for event in events:
        typer.echo(f"announced {event['type']} {event['name']} v{event['version']} on {settings.announce_topic}")
    typer.echo(f"{len(events)} announced")
