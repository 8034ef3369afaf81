"""`flywheel privacy`: erasure on request, and the audit of erasures (settings from FLYWHEEL_PRIVACY_*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, VerboseOption, configure_logging, lake_settings

if TYPE_CHECKING:
    from flywheel_feedback.services.lake.store import ObjectStore
    from flywheel_feedback.services.settings import SliceSettings

privacy_app = typer.Typer(no_args_is_help=True, help="Privacy: erase a person from the lake on request.")


@privacy_app.command("erase")
def privacy_erase(
    user_id: Annotated[str, typer.Option("--user-id", help="the user_id the person's events carry")],
    requested_by: Annotated[
        str | None,
        typer.Option(help="who asks, for the audit record: an operator or a ticket (default: "
                          "FLYWHEEL_PRIVACY_REQUESTED_BY, else the OS user)"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    announce: Annotated[
        bool | None,
        typer.Option(help="announce the slice and export versions published without the rows (default: "
                          "FLYWHEEL_SLICES_ANNOUNCE)"),
    ] = None,
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Delete every row about one user from every table (events, labels, gold, outbox, slices, exports), vacuum
    the files, and record the erasure (who asked, when, rows per table; nothing about the person). With
    FLYWHEEL_ARGILLA_API_KEY set, also their records in Argilla; when Argilla is unreachable that part stays
    pending, and every later run retries it."""
    import getpass

    from flywheel_feedback.services.privacy.erase import erase_user
    from flywheel_feedback.services.settings import AnnotationSettings, PrivacySettings, SliceSettings

    configure_logging(verbose)
    settings = PrivacySettings()
    store = (settings.lake if lake is None else lake_settings(lake)).open()
    who = requested_by or settings.requested_by or getpass.getuser()
    if not yes:
        typer.confirm(f"erase every row about user {user_id!r} from {store.url}? This cannot be undone", abort=True)
    annotation = AnnotationSettings()
    if annotation.api_key is None:
        typer.echo("FLYWHEEL_ARGILLA_API_KEY is not set: Argilla's records are not erased", err=True)
    result = erase_user(store, user_id, requested_by=who, annotation=annotation)
    for table, rows in result.rows.items():
        version = result.new_versions.get(table)
        note = f", v{version} published without them" if version is not None else ""
        typer.echo(f"{table:<28} {rows:>8} rows{note}")
    typer.echo(result.summary())
    if result.argilla_error is not None:
        typer.echo(f"the Argilla part stays pending: {result.argilla_error}", err=True)
    slices = SliceSettings()
    if result.new_versions and (slices.announce if announce is None else announce):
        _announce(store, slices)


def _announce(store: ObjectStore, settings: SliceSettings) -> None:
    from flywheel_feedback.services.slices.announce import KafkaAnnouncer, announce_pending

    try:
        with KafkaAnnouncer(settings.kafka, topic=settings.announce_topic,
                            timeout_s=settings.announce_timeout_s) as sender:
            for event in announce_pending(store, sender):
                typer.echo(f"announced {event['type']} {event['name']} v{event['version']}")
    except Exception as e:  # the versions are durable; `flywheel slices announce` sends them later
        typer.echo(f"announcing failed (run `flywheel slices announce` later): {type(e).__name__}: {e}", err=True)


@privacy_app.command("erasures")
def privacy_erasures(lake: LakeOption = None) -> None:
    """The audit of erasures: when, who asked, rows per table."""
    import polars as pl

    from flywheel_feedback.services.privacy.erase import read_erasures

    frame = read_erasures(lake_settings(lake).open())
    if frame.is_empty():
        typer.echo("no erasures")
        return
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40):
        typer.echo(frame.select("requested_at", "erasure_id", "requested_by", "table", "rows", "new_version"))
