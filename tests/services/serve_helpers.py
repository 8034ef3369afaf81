"""Helpers for tests that run `flywheel serve` as a process: start it, read its health, wait with a deadline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import REPO


def start_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "flywheel_feedback.services.cli", "serve"],
                                env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=out)


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    """For `finally`: a serve the test did not stop itself is killed by its PID."""
    if process.poll() is None:
        process.kill()
        process.wait(10)


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of GET path; (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, log: Path, *, every_s: float = 0.2) -> float:
    """Poll `check` until it holds; returns the monotonic time it did. Fails with the log's tail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s\n{log.read_text(errors='replace')[-5000:]}")


def refuses(address: str) -> bool:
    """True when nothing accepts connections at host:port any more."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return False
    except OSError:
        return True
