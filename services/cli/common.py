"""What every command shares: the lake option, logging set-up, and the one handler that turns the project's
errors into a one-line message and an exit code."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from flywheel_feedback.services.lake.store import ObjectStore
    from flywheel_feedback.services.settings import LakeSettings

LakeOption = Annotated[
    str | None, typer.Option(help="the lake: a local path or s3:// URL (default: FLYWHEEL_LAKE_URL, else ./lake)")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", help="debug logging, library loggers included")]

# Libraries that log every request at INFO; the commands' own progress lines say what matters.
QUIET_LIBRARIES: Sequence[str] = ("httpx", "argilla.sdk", "kafka", "aiokafka", "faststream.access")


class GuardedGroup(TyperGroup):
    """The root command group: the project's errors (and invalid settings) end a command with one line, no
    traceback. Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors its own click)
        from pydantic import ValidationError

        from flywheel_feedback.client import EmitterError
        from flywheel_feedback.services.errors import FlywheelError

        try:
            return super().invoke(ctx)
        except (FlywheelError, EmitterError) as e:
            message = str(e)
        except ValidationError as e:  # settings from the environment that do not parse
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            message = f"invalid settings ({e.title}): {problems}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=1)


def configure_logging(verbose: bool = False) -> None:
    """Logging is configured here, in the entry points, and nowhere else."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


def lake_settings(lake: str | None) -> LakeSettings:
    """The lake named on the command line, or else the one the environment configures."""
    from flywheel_feedback.services.settings import LakeSettings

    return LakeSettings() if lake is None else LakeSettings(url=lake)


def open_lake(lake: str | None) -> ObjectStore:
    return lake_settings(lake).open()


def with_lake(settings: Any, lake: str | None) -> Any:
    """A process's settings with the lake the command line named (its own `lake` field otherwise)."""
    return settings if lake is None else settings.model_copy(update={"lake": lake_settings(lake)})
