"""Slice definitions: one small TOML file per slice, in a folder (`slices/` at the repo root by default).

    # slices/support-reply.toml
    name = "support-reply"          # must match the file name
    tasks = ["reply-draft"]         # empty or absent: every task
    size = 2000
    strata = ["task", "segment", "model_version", "topic_cluster"]
    min_gold_share = 0.05
    max_age = "14d"                 # items older than this retire; a version older than this is renewed
    window = "36h"                  # what "recent traffic" means
    drift_threshold = 0.05          # Jensen-Shannon divergence (bits) past which a renewal is proposed

Durations are a number and a unit: s, m, h, d, w ("90m", "36h", "14d"). A file is validated on load and a
mistake is reported with the file's path and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from flywheel_feedback.services.errors import FlywheelError

Stratum = Literal["task", "segment", "model_version", "topic_cluster"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def parse_duration(value: Any) -> timedelta:
    """"36h" -> 36 hours; a timedelta passes through."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration such as '90m', '36h' or '14d', got {value!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


class SliceDefinition(BaseModel):
    """What a slice is: which traffic, how big, stratified how, how fresh."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    tasks: tuple[str, ...] = ()
    size: int = Field(ge=1, le=100_000_000)
    strata: tuple[Stratum, ...] = ("task", "segment", "model_version", "topic_cluster")
    min_gold_share: float = Field(0.0, ge=0, le=1)
    min_confidence: float = Field(0.8, gt=0, le=1, description="weak labels below this never enter the slice")
    max_age: Duration = timedelta(days=30)
    window: Duration = timedelta(days=7)
    drift_threshold: float = Field(0.05, gt=0, le=1)
    clusters: int = Field(24, ge=2, le=1000)
    min_per_stratum: int = Field(1, ge=0)
    renewal_budget: int = Field(500, ge=0, description="most items one renewal adds to the renewal queue")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SliceDefinition:
        if len(set(self.strata)) != len(self.strata):
            raise ValueError(f"strata repeat a dimension: {list(self.strata)}")
        if any(not t for t in self.tasks):
            raise ValueError("tasks must be non-empty names")
        return self

    @property
    def fingerprint(self) -> str:
        """Names the definition's content, so a manifest says exactly what it was built from."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


class DefinitionError(FlywheelError, ValueError):
    """A definition file that cannot be used, with its path in the message."""


def load_definition(path: Path) -> SliceDefinition:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise DefinitionError(f"{path}: cannot read the slice definition: {e}") from e
    try:
        definition = SliceDefinition.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}" for err in e.errors())
        raise DefinitionError(f"{path}: invalid slice definition: {problems}") from e
    if definition.name != path.stem:
        raise DefinitionError(f"{path}: the name {definition.name!r} must match the file name {path.stem!r}")
    return definition


def load_definitions(folder: Path) -> dict[str, SliceDefinition]:
    """Every `*.toml` definition in `folder`, by name."""
    if not folder.is_dir():
        raise DefinitionError(f"{folder}: expected a folder of slice definitions (*.toml)")
    return {d.name: d for d in (load_definition(p) for p in sorted(folder.glob("*.toml")))}


def find_definition(folder: Path, name: str) -> SliceDefinition:
    path = folder / f"{name}.toml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
        raise DefinitionError(f"no slice definition {name!r} in {folder} (found {known})")
    return load_definition(path)
