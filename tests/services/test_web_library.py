"""The browser library's own unit tests under node (node:test: batching, retries with backoff, ids made once,
dwell accounting), and its build: one ES module with declarations, no runtime dependency, the size the README
states."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import REPO

from .web_helpers import MODULE, WEB, built

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
