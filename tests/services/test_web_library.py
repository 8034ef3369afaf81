"""The browser library's own unit tests under node (node:test: batching, retries with backoff, ids made once,
dwell accounting, the observation's copies, edits, accepts and abandons), its build: one ES module with
declarations, no runtime dependency, the size the README states, and tsc's proof that the events it sends are the
contract's (clients/web/test/types/contract.ts against schemas/typescript/events.d.ts), which fails on a drift."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

from .web_helpers import MODULE, WEB, built, installed

pytestmark = pytest.mark.slow  # npm ci on first use, tsc and esbuild


def test_the_node_unit_tests_pass() -> None:
    built()
    done = subprocess.run(["node", "--test", "test/unit/"], cwd=WEB, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^# pass [1-9]\d*$", done.stdout, re.M) and re.search(r"^# fail 0$", done.stdout, re.M)


def test_the_build_is_one_module_without_dependencies_and_its_size_is_in_the_readme() -> None:
    line = built()
    minified, gzipped = (int(n) for n in re.findall(r"(\d+) bytes", line))
    assert MODULE.stat().st_size == minified
    assert not re.search(r"\bimport\s*[{*(\"']|\bfrom\s*\"", MODULE.read_text())  # bundled: imports nothing
    assert (WEB / "dist" / "index.d.ts").exists()
    package = json.loads((WEB / "package.json").read_text())
    assert "dependencies" not in package and package["types"] == "./dist/index.d.ts"
    stated = re.search(r"([\d.]+) kB minified and gzipped", (REPO / "README.md").read_text())
    assert stated, "the README states the module's size"
    assert abs(float(stated.group(1)) * 1000 - gzipped) <= 100, (stated.group(0), gzipped)


CONTRACT = REPO / "schemas" / "typescript" / "events.d.ts"
LIBRARY_EVENTS = WEB / "src" / "events.ts"
CHECK = WEB / "test" / "types"


def agreement_check(root: Path) -> subprocess.CompletedProcess[str]:
    """tsc over test/types/contract.ts of the tree at `root` (the repository, or a copy of the files it reads)."""
    tsc = WEB / "node_modules" / "typescript" / "bin" / "tsc"
    project = root / CHECK.relative_to(REPO) / "tsconfig.json"
    return subprocess.run(["node", str(tsc), "-p", str(project)], capture_output=True, text=True, check=False)


def test_the_events_the_library_sends_are_the_contract_s() -> None:
    installed()
    done = agreement_check(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


# each drift, made in a copy of the two files, must fail the check: (file, text in it, what replaces it)
DRIFTS = {
    "a field of another type": (LIBRARY_EVENTS, 'type: "copy"; chars: number', 'type: "copy"; chars: string'),
    "a field the contract does not declare": (LIBRARY_EVENTS, 'type: "dwell"; dwell_ms', 'type: "dwell"; dwellMs'),
    "an event the contract does not have": (LIBRARY_EVENTS, '| { type: "retry" }',
                                            '| { type: "retry" }\n  | { type: "share" }'),
    "a thumbs value the contract does not take": (LIBRARY_EVENTS, '"up" | "down"', '"up" | "down" | "meh"'),
    "a field the contract comes to require": (CONTRACT, "chars?: number | null;",
                                              "chars?: number | null;\n  source: string;"),
}


def copy_of_the_checked_files(root: Path) -> None:
    for path in (LIBRARY_EVENTS, CONTRACT, WEB / "tsconfig.json", CHECK / "tsconfig.json", CHECK / "contract.ts"):
        (root / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / path.relative_to(REPO))


def test_the_check_passes_in_a_copy_without_drift(tmp_path: Path) -> None:
    """So that the drifts below fail for their drift, not for the copy."""
    installed()
    copy_of_the_checked_files(tmp_path)
    done = agreement_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("drift", DRIFTS)
def test_a_drift_between_the_library_s_events_and_the_contract_fails_the_check(drift: str, tmp_path: Path) -> None:
    installed()
    copy_of_the_checked_files(tmp_path)
    changed, old, new = DRIFTS[drift]
    target = tmp_path / changed.relative_to(REPO)
    text = target.read_text()
    assert old in text, f"the drift {drift!r} no longer applies to {changed.name}"
    target.write_text(text.replace(old, new, 1))
    done = agreement_check(tmp_path)
    assert done.returncode != 0, f"tsc took {drift}"
    assert "contract.ts" in done.stdout, done.stdout + done.stderr
