"""The base of the project's own errors: what a user can act on, said in one line (the CLI prints it so)."""

from __future__ import annotations


class FlywheelError(Exception):
    """An error whose message tells the user what went wrong and where (a path, a topic, a version)."""
