"""TRL's data utilities, installed beside the project rather than in it, for the export tests.

`trl.data_utils` imports without torch but needs transformers (about 130 MB installed). In the project's venv
transformers would also change what other packages import (Presidio starts loading it), so the pinned packages
go, once, into a folder of the cache (`pip install --no-deps --target`), and the checks run in a child process
that puts that folder first on its path. The child is the venv's own Python, so `datasets` is the project's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# the versions the check was written against; trl.data_utils's helpers changed names across major versions
PACKAGES = ("trl==1.16.0", "transformers==5.24.0", "tokenizers==0.23.3", "safetensors==0.8.0")


def trl_folder() -> Path:
    """The folder holding the pinned packages, installed on first use."""
    cache = Path(os.environ.get("FLYWHEEL_CACHE") or Path.home() / ".cache" / "flywheel")
    folder = cache / ("trl-" + "-".join(p.replace("==", "") for p in PACKAGES))
    done = folder / ".installed"
    if not done.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
                        *PACKAGES], check=True, timeout=600)
        done.touch()
    return folder


def run_check(script: Path, *args: str) -> dict[str, object]:
    """Run `script` with TRL importable; it prints one JSON object as its last line, which is returned. (-P: the
    script's folder is not put on the path, where tests/packaging would hide the `packaging` distribution.)"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(trl_folder()), os.environ.get("PYTHONPATH", "")])}
    env["TRANSFORMERS_VERBOSITY"] = "error"  # "PyTorch was not found": expected, only the data utilities are used
    done = subprocess.run([sys.executable, "-P", str(script), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
