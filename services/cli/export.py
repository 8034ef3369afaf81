"""`flywheel export`: training sets from labeled traffic (settings from FLYWHEEL_SLICES_*)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption
from flywheel_feedback.services.cli.slices import ToOption, VersionOption, pull_version, slice_settings

if TYPE_CHECKING:
    from flywheel_feedback.labeling.exports import Kind

export_app = typer.Typer(
    no_args_is_help=True, help="Training sets from labeled traffic: SFT examples, preference pairs, classifier data."
)

TasksOption = Annotated[list[str] | None, typer.Option("--task", help="only these tasks (repeatable)")]
MinConfidenceOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="weak labels below this are left out")]
IncludeEvalOption = Annotated[bool, typer.Option(help="keep items of the latest eval slices (held out by default)")]


def _export(kind: Kind, *, tasks: list[str] | None, min_confidence: float, include_eval: bool, dry_run: bool,
            lake: str | None, verbose: bool) -> None:
    from flywheel_feedback.services.slices.announce import announcer_from
    from flywheel_feedback.services.slices.exports import export

    settings = slice_settings(lake, verbose=verbose)
    announcer = None if dry_run else announcer_from(settings)
    try:
        result = export(settings.lake.open(), kind, tasks=tasks or (), min_confidence=min_confidence,
                        exclude_slices=not include_eval, dry_run=dry_run, announcer=announcer)
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


@export_app.command("sft")
def export_sft(tasks: TasksOption = None, min_confidence: MinConfidenceOption = 0.8,
               include_eval: IncludeEvalOption = False, dry_run: bool = False, lake: LakeOption = None,
               verbose: VerboseOption = False) -> None:
    """SFT examples: input -> the corrected, edited or accepted output (chat-format JSONL and Parquet)."""
    _export("sft", tasks=tasks, min_confidence=min_confidence, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("preference")
def export_preference(tasks: TasksOption = None, include_eval: IncludeEvalOption = False, dry_run: bool = False,
                      lake: LakeOption = None, verbose: VerboseOption = False) -> None:
    """Preference pairs: chosen = the user's edit, correction or used regeneration; rejected = the original."""
    _export("preference", tasks=tasks, min_confidence=1.0, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("classifier")
def export_classifier(tasks: TasksOption = None, min_confidence: MinConfidenceOption = 0.8,
                      include_eval: IncludeEvalOption = False, dry_run: bool = False, lake: LakeOption = None,
                      verbose: VerboseOption = False) -> None:
    """Classifier data: text, label, confidence (human gold and confident weak labels)."""
    _export("classifier", tasks=tasks, min_confidence=min_confidence, include_eval=include_eval, dry_run=dry_run,
            lake=lake, verbose=verbose)


@export_app.command("list")
def export_list(lake: LakeOption = None) -> None:
    """Published training exports."""
    from flywheel_feedback.services.slices.versions import EXPORTS_PREFIX, list_roots, read_manifest

    store = slice_settings(lake).lake.open()
    for root, versions in list_roots(store, EXPORTS_PREFIX).items():
        latest = read_manifest(store, root, versions[-1])
        typer.echo(f"{root:<24} v{versions[-1]:<3} {latest['rows']:>9} rows  created {latest['created_at']}  "
                   f"versions {versions}")


@export_app.command("pull")
def export_pull(kind: str, version: VersionOption = None, to: ToOption = Path("."), lake: LakeOption = None) -> None:
    """Copy an export version (verified) and its manifest to a local folder: <to>/exports/<kind>/v<k>/."""
    from flywheel_feedback.services.slices.versions import export_root

    pull_version(export_root(kind), version, to, lake)
