"""Prepare an Argilla server database: migrate it and create the users that deploy/argilla.sh hands to tests.

Runs inside argilla-server's own virtualenv (not the project's) with the same ARGILLA_* environment as the
server. It drives argilla-server's own command line (`python -m argilla_server database ...`) in one process,
so the ~8 s of imports are paid once instead of once per command.

Usage: bootstrap.py USERNAME:ROLE:PASSWORD:API_KEY [...]
Users that already exist are left alone (argilla-server's command skips them).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def _run(app: Any, args: list[str]) -> None:
    # standalone_mode=False: click returns instead of calling sys.exit, and raises on errors.
    app(args, standalone_mode=False)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    # argilla-server lives in its own virtualenv, not in the project's: imported by name.
    app = importlib.import_module("argilla_server.cli").app

    _run(app, ["database", "migrate"])
    for spec in argv:
        username, role, password, api_key = spec.split(":", 3)
        _run(
            app,
            [
                "database", "users", "create",
                "--first-name", username,
                "--username", username,
                "--role", role,
                "--password", password,
                "--api-key", api_key,
                "--workspace", "default",
            ],
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
