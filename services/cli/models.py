"""`flywheel models`: how each model behaves over time, what changed, and which data fed which model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flywheel_feedback.services.cli.common import LakeOption, open_lake

models_app = typer.Typer(no_args_is_help=True, help="Models: behaviour over time, change alarms, diffs, lineage.")

DaysOption = Annotated[float | None, typer.Option(help="only the last DAYS days of traffic (default: all)")]


def _print(frame: object) -> None:
    import polars as pl

    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=200, fmt_str_lengths=60):
        typer.echo(frame)


@models_app.command("alarms")
def models_alarms(
    lake: LakeOption = None,
    days: DaysOption = None,
    false_alarms_per_week: Annotated[
        float | None,
        typer.Option(help="false alarms per model per week (default: FLYWHEEL_MODELS_FALSE_ALARMS_PER_WEEK)"),
    ] = None,
    webhook: Annotated[bool, typer.Option("--webhook", help="also POST them to FLYWHEEL_MODELS_WEBHOOK_URL")] = False,
) -> None:
    """Behaviour changes per model, version and task: silent (same version) and across versions."""
    from flywheel_feedback.labeling.changes import alarms_frame
    from flywheel_feedback.services.errors import FlywheelError
    from flywheel_feedback.services.models.behaviour import lake_interactions, model_alarms
    from flywheel_feedback.services.models.webhook import describe, post_alarms
    from flywheel_feedback.services.settings import ModelSettings

    settings = ModelSettings()
    if false_alarms_per_week is not None:
        settings = settings.model_copy(update={"false_alarms_per_week": false_alarms_per_week})
    interactions = lake_interactions(open_lake(lake), days=days)
    if interactions is None:
        raise FlywheelError("no labels in this lake yet: run `flywheel label` first")
    _, alarms = model_alarms(interactions, settings.detector())
    for alarm in alarms:
        typer.echo(describe(alarm))
    if not alarms:
        typer.echo("no model change detected")
    else:
        _print(alarms_frame(alarms).drop("statistic", "threshold"))
    if webhook:
        if settings.webhook_url is None:
            raise FlywheelError("--webhook needs FLYWHEEL_MODELS_WEBHOOK_URL")
        post_alarms(settings.webhook_url.get_secret_value(), alarms, timeout_s=settings.webhook_timeout_s)


@models_app.command("diff")
def models_diff(
    a: Annotated[str, typer.Argument(help="the current model, ID@VERSION")],
    b: Annotated[str, typer.Argument(help="the candidate, ID@VERSION")],
    lake: LakeOption = None,
    days: DaysOption = None,
    alpha: Annotated[float, typer.Option(help="significance level over all rows (Bonferroni)")] = 0.01,
    all_tasks: Annotated[bool, typer.Option("--all-rows", help="every task's rows too, not only the totals")] = False,
) -> None:
    """A migration readiness report: A and B on the tasks both served, sorted by what changed most."""
    import polars as pl

    from flywheel_feedback.labeling.fingerprints import interaction_features
    from flywheel_feedback.labeling.model_diff import diff_models
    from flywheel_feedback.services.errors import FlywheelError
    from flywheel_feedback.services.models.behaviour import lake_interactions
    from flywheel_feedback.services.models.lineage import comparability, not_comparable, parse_ref, read_lineage

    store = open_lake(lake)
    ra, rb = parse_ref(a, "model A"), parse_ref(b, "model B")
    interactions = lake_interactions(store, days=days)
    if interactions is None:
        raise FlywheelError("no labels in this lake yet: run `flywheel label` first")
    try:
        diff = diff_models(interaction_features(interactions), (ra.name, ra.version),
                           (rb.name, rb.version), alpha=alpha)
    except ValueError as e:
        raise FlywheelError(str(e)) from None
    if not all_tasks:
        diff = diff.filter(pl.col("app") == "all")
    typer.echo(f"{a} -> {b}: {diff.filter('significant').height} significant difference(s) of {diff.height}")
    _print(diff.select("app", "task", "measure", "a", "b", "change", "ci_low", "ci_high", "p_value", "effect",
                       "significant"))
    for reason in not_comparable(comparability(read_lineage(store)), ra, rb):
        typer.echo(f"NOT COMPARABLE: {reason}")


@models_app.command("record")
def models_record(
    model: Annotated[str, typer.Option(help="the model, ID@VERSION")],
    trained_on: Annotated[str | None, typer.Option(help="the export it was trained on, KIND@VERSION")] = None,
    evaluated_on: Annotated[str | None, typer.Option(help="the slice it was scored on, SLICE@VERSION")] = None,
    metrics: Annotated[Path | None, typer.Option(help="a JSON file of its scores there, {name: number}")] = None,
    lake: LakeOption = None,
) -> None:
    """Record which export trained a model and which slice version its scores come from."""
    from flywheel_feedback.services.models.lineage import LineageError, parse_ref, record

    scores: dict[str, float] | None = None
    if metrics is not None:
        try:
            loaded = json.loads(metrics.read_text())
        except (OSError, ValueError) as e:
            raise LineageError(f"cannot read metrics from {metrics}: {e}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, int | float) for v in loaded.values()):
            raise LineageError(f"expected {metrics} to hold a JSON object of numbers")
        scores = {str(k): float(v) for k, v in loaded.items()}
    rows = record(
        open_lake(lake), parse_ref(model, "--model"),
        trained_on=None if trained_on is None else parse_ref(trained_on, "--trained-on"),
        evaluated_on=None if evaluated_on is None else parse_ref(evaluated_on, "--evaluated-on"),
        metrics=scores,
    )
    for r in rows.iter_rows(named=True):
        typer.echo(f"recorded {model} {r['relation']} {r['dataset']} v{r['dataset_version']}")


@models_app.command("lineage")
def models_lineage(
    model: Annotated[str | None, typer.Option(help="what this model (ID@VERSION) was trained and scored on")] = None,
    interaction: Annotated[str | None, typer.Option(help="which exports, slices and models used it")] = None,
    lake: LakeOption = None,
) -> None:
    """For a model, its training export and eval slices (scores on other versions of a slice flagged); for an
    interaction, the export and slice versions holding it and the models trained or scored on them."""
    import polars as pl

    from flywheel_feedback.services.models.lineage import (
        LineageError,
        comparability,
        interaction_lineage,
        model_lineage,
        parse_ref,
        read_lineage,
    )

    if (model is None) == (interaction is None):
        raise LineageError("give exactly one of --model ID@VERSION and --interaction ID")
    store = open_lake(lake)
    lineage = read_lineage(store)
    if interaction is not None:
        _print(interaction_lineage(store, interaction, lineage))
        return
    assert model is not None
    ref = parse_ref(model, "--model")
    mine = model_lineage(lineage, ref)
    if mine.is_empty():
        typer.echo(f"nothing recorded for {model}")
        return
    _print(mine.select("relation", "dataset", "dataset_version", "metrics", "recorded_at"))
    scores = comparability(lineage).filter(
        pl.col("dataset").is_in(mine["dataset"].to_list()) & ~pl.col("comparable"))
    for r in scores.iter_rows(named=True):
        if (r["model_id"], r["model_version"]) != (ref.name, ref.version):
            typer.echo(f"NOT COMPARABLE: {r['model_id']}@{r['model_version']} was scored on {r['dataset']} "
                       f"v{r['dataset_version']} (versions scored: {r['slice_versions']})")
