"""What every command shares: the lake option, logging set-up, and the one handler that turns the project's
errors into a one-line message and an exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from flywheel_feedback.services.logs import redact_secrets_of

if TYPE_CHECKING:
    from flywheel_feedback.services.lake.store import ObjectStore
    from flywheel_feedback.services.settings import LakeSettings

LakeOption = Annotated[
    str | None, typer.Option(help="the lake: a local path or s3:// URL (default: FLYWHEEL_LAKE_URL, else ./lake)")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", help="debug logging, library loggers included")]



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
    """Logging is configured here, in the entry points, and nowhere else (services/logs.py)."""
    from flywheel_feedback.services.logs import configure

    configure(verbose)


def lake_settings(lake: str | None) -> LakeSettings:
    """The lake named on the command line, or else the one the environment configures."""
    from flywheel_feedback.services.settings import LakeSettings

    settings = LakeSettings() if lake is None else LakeSettings(url=lake)
    redact_secrets_of(settings)
    return settings


def open_lake(lake: str | None) -> ObjectStore:
    return lake_settings(lake).open()


def with_lake(settings: Any, lake: str | None) -> Any:
    """A process's settings with the lake the command line named (its own `lake` field otherwise)."""
    chosen = settings if lake is None else settings.model_copy(update={"lake": lake_settings(lake)})
    redact_secrets_of(chosen)  # every secret a command holds is redacted from every log line
    return chosen
