"""`flywheel slices` and `flywheel export` on a local lake, and slice definition files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flywheel_feedback.services.cli import app
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.slices.definitions import (
    DefinitionError,
    find_definition,
    load_definition,
    load_definitions,
)

from .slices_helpers import capture_and_label, simulate_drift, write_definition

REPO = Path(__file__).resolve().parents[2]
NAME = "cli-slice"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A lake with both halves of drifted traffic, and a definitions folder; nothing published."""
    root = tmp_path_factory.mktemp("slices-cli")
    traffic = simulate_drift(root / "traffic", interactions=2000, seed=5)
    store = LocalStore(root / "lake")
    before = pl.col("ts") < traffic.drift_at
    capture_and_label(store, traffic.first, traffic.truth.filter(before), gold_share=0.05, seed=1, tag="a")
    write_definition(root / "slices", NAME, size=200)
    return root / "lake", root / "slices"


def run(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env={"FLYWHEEL_SLICES_ANNOUNCE": "false", **(env or {})})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_slices_commands_end_to_end(lake: tuple[Path, Path], tmp_path: Path) -> None:
    path, definitions = lake
    common = ["--lake", str(path)]
    assert "nothing published yet" in run("slices", "list", *common, "--definitions", str(definitions))
    dry = run("slices", "renew", NAME, *common, "--definitions", str(definitions), "--dry-run")
    assert "proposed (dry run)" in dry and not (path / "slices").exists()
    first = run("slices", "renew", "--all", *common, "--definitions", str(definitions))
    assert f"{NAME} v1 published (first version)" in first
    listed = run("slices", "list", *common, "--definitions", str(definitions))
    assert f"{NAME}" in listed and "v1" in listed
    fresh = run("slices", "renew", NAME, *common, "--definitions", str(definitions))
    assert "no renewal" in fresh
    forced = run("slices", "renew", NAME, *common, "--definitions", str(definitions), "--force")
    assert f"{NAME} v2 published (forced)" in forced
    shown = run("slices", "show", NAME, *common, "--definitions", str(definitions), "--drift")
    assert "verified: every file matches its manifest" in shown and "drift now" in shown
    assert f"Delta table slices/{NAME} at version 1;" in shown  # v2: the second commit
    manifest = json.loads(run("slices", "show", NAME, "-v", "1", *common, "--json").split("\nverified")[0])
    assert manifest["version"] == 1 and manifest["content_hash"].startswith("sha256:")
    diffed = run("slices", "diff", NAME, "1", *common, "--limit", "2")
    assert f"{NAME} v1 -> v2" in diffed and "added (" in diffed and "retired (" in diffed
    pulled = run("slices", "pull", NAME, *common, "--to", str(tmp_path / "out")).split()
    assert {Path(p).name for p in pulled} == {"data.parquet", "retired.parquet", "manifest.json"}
    assert pl.read_parquet(tmp_path / "out" / "slices" / NAME / "v2" / "data.parquet").height > 0


def test_export_commands(lake: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = lake
    common = ["--lake", str(path)]
    assert "would publish (dry run)" in run("export", "preference", *common, "--dry-run")
    out = run("export", "sft", *common, "--task", "reply-draft", "--min-confidence", "0.9")
    assert "sft v1 published" in out
    assert "exports/sft" in run("export", "list", *common)
    pulled = run("export", "pull", "sft", *common, "--to", str(tmp_path)).split()
    assert {Path(p).name for p in pulled} == {"data.parquet", "data.jsonl", "manifest.json"}
    manifest = json.loads((tmp_path / "exports" / "sft" / "v1" / "manifest.json").read_text())
    assert manifest["options"] == {"tasks": ["reply-draft"], "min_confidence": 0.9, "exclude_slices": True}


def test_the_commands_report_mistakes_without_a_traceback(lake: tuple[Path, Path]) -> None:
    path, definitions = lake
    runner = CliRunner()
    env = {"FLYWHEEL_SLICES_ANNOUNCE": "false"}
    missing = runner.invoke(app, ["slices", "show", "nope", "--lake", str(path)], env=env)
    assert missing.exit_code == 1 and "nothing published under slices/nope" in missing.output
    unknown = runner.invoke(app, ["slices", "renew", "nope", "--lake", str(path), "--definitions", str(definitions)],
                            env=env)
    assert unknown.exit_code == 1 and "no slice definition 'nope'" in unknown.output
    neither = runner.invoke(app, ["slices", "renew", "--lake", str(path)], env=env)
    assert neither.exit_code == 2 and "--all" in neither.output


def test_the_example_definitions_load() -> None:
    found = load_definitions(REPO / "slices")
    assert {"support-reply", "all-products"} <= set(found)
    support = found["support-reply"]
    assert support.tasks == ("reply-draft",) and support.window.total_seconds() == 36 * 3600
    assert find_definition(REPO / "slices", "support-reply") == support


def test_definition_mistakes_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = write_definition(tmp_path, "broken", window="36 hours")
    with pytest.raises(DefinitionError, match=r"broken\.toml: invalid slice definition: window"):
        load_definition(path)
    (tmp_path / "other.toml").write_text('name = "different"\nsize = 10\n')
    with pytest.raises(DefinitionError, match="must match the file name"):
        load_definition(tmp_path / "other.toml")
    (tmp_path / "extra.toml").write_text('name = "extra"\nsize = 10\ncolour = "red"\n')
    with pytest.raises(DefinitionError, match="colour"):
        load_definition(tmp_path / "extra.toml")
    (tmp_path / "strata.toml").write_text('name = "strata"\nsize = 10\nstrata = ["task", "task"]\n')
    with pytest.raises(DefinitionError, match="repeat"):
        load_definition(tmp_path / "strata.toml")
    (tmp_path / "toml.toml").write_text('name = "toml"\nsize = \n')
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definition(tmp_path / "toml.toml")
