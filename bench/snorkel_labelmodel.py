"""Snorkel's LabelModel on label matrices, run in a bench-only environment (Snorkel is not a project dependency).

bench/labelmodel.py starts this script as a child process with a Python that has Snorkel:

    python3 -m venv /tmp/snorkel-venv && /tmp/snorkel-venv/bin/pip install snorkel
    FLYWHEEL_SNORKEL_PYTHON=/tmp/snorkel-venv/bin/python .venv/bin/python bench/labelmodel.py --write-snorkel

(or pass --snorkel-python). Measured with snorkel 0.10.0 and torch 2.15 on CPU. This script reads one JSON
object on stdin, {"settings": {...}, "sets": [{"name", "cardinality", "fit": L, "test": L}, ...]}, fits
`snorkel.labeling.model.LabelModel(cardinality, device="cpu")` on each "fit" matrix (weak labels only, no
gold, no class balance given: Snorkel then assumes uniform) with the settings' n_epochs, lr and seed (Snorkel's
other training options at their defaults: sgd, l2=0, prec_init=0.7), and writes {"versions": {...},
"predictions": {name: [class per test row]}} on stdout: `predict(tie_break_policy="random")` (a tied class
chosen by a hash of the row index), so ties and rows with no vote get a class, as majority vote's do. The
caller scores them. Only the standard library, numpy and Snorkel are imported: the project is not installed
in that environment.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Snorkel's predictions on every test matrix of `request` (see the module docstring)."""
    import snorkel
    import torch
    from snorkel.labeling.model import LabelModel

    settings = request["settings"]
    predictions = {}
    for spec in request["sets"]:
        fit = np.asarray(spec["fit"], dtype=np.int64)
        test = np.asarray(spec["test"], dtype=np.int64)
        model = LabelModel(cardinality=int(spec["cardinality"]), device="cpu", verbose=False)
        model.fit(
            fit,
            n_epochs=int(settings["n_epochs"]),
            lr=float(settings["lr"]),
            seed=int(settings["seed"]),
            log_freq=int(settings["n_epochs"]),
            progress_bar=False,
        )
        predicted = model.predict(test, tie_break_policy="random")
        predictions[spec["name"]] = [int(x) for x in predicted]
    return {"versions": {"snorkel": snorkel.__version__, "torch": torch.__version__}, "predictions": predictions}


def main() -> None:
    json.dump(run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
