"""The browser library in clients/web/ for tests: installed from its package-lock.json and built once."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import REPO

WEB = REPO / "clients" / "web"
MODULE = WEB / "dist" / "flywheel-web.js"


def npm() -> str:
    path = shutil.which("npm")
    assert path is not None, "npm is not on PATH (Node.js 18+ with npm is needed; see the README)"
    return path


def installed() -> None:
    """npm ci when node_modules is older than the lock file (npm writes the stamp on every install)."""
    lock, stamp = WEB / "package-lock.json", WEB / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)


def built() -> str:
    """Build dist/ from src/ (types checked by tsc); the build's own line with the module's size."""
    installed()
    done = subprocess.run(["node", "build.mjs"], cwd=WEB, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]
