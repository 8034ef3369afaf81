"""A Kafka node of a test's own, for tests that stop Kafka: deploy/kafka.sh with its own run directory (its own
ports, data, pidfile), stopped and resumed by the PID in that pidfile. The shared broker is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

KAFKA_SH = REPO / "deploy" / "kafka.sh"


class OwnKafka:
    def __init__(self, run_dir: Path, *, heap: str = "-Xms128m -Xmx384m") -> None:
        self.run_dir = run_dir
        self._env = {**os.environ, "FLYWHEEL_RUN_DIR": str(run_dir), "FLYWHEEL_KAFKA_HEAP": heap,
                     "FLYWHEEL_PYTHON": sys.executable}

    def _run(self, command: str, timeout: float = 180) -> None:
        done = subprocess.run(["nice", "-n", "10", "bash", str(KAFKA_SH), command], env=self._env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/kafka.sh {command} failed:\n{done.stderr[-3000:]}")

    @property
    def bootstrap(self) -> str:
        return (self.run_dir / "kafka" / "bootstrap").read_text().strip()

    def start(self) -> OwnKafka:
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def resume(self) -> None:
        self._run("resume")
