"""Runs the Node.js tools beside the schemas (tools/schemas-node/ in a checkout): ajv and json-schema-to-typescript.

Only for a checkout of the repository (the generator and the contract tests); the client package never calls it.
The tools' npm packages are pinned by its package-lock.json and installed on first use, so a fresh clone works.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent.parent / "tools" / "schemas-node"


class NodeUnavailableError(RuntimeError):
    """node or npm is not on PATH, or the tools folder is missing (not a checkout)."""


def run(script: str, stdin: str) -> str:
    """Run one of the tools' scripts with `stdin`; its standard output."""
    node = _installed()
    done = subprocess.run(
        [node, str(NODE_DIR / script)], input=stdin, capture_output=True, text=True, encoding="utf-8", check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _installed() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None or not (NODE_DIR / "package-lock.json").exists():
        raise NodeUnavailableError(f"needs node and npm on PATH and {NODE_DIR}")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"  # npm writes it on every install
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        # npm ci: exactly the locked versions, the same output on every machine
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True)
    return node
