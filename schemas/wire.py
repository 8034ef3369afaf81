"""Field types that read JSON the way JSON Schema does, so the published schemas and capture agree.

Python and a JSON Schema validator (which sees parsed JSON: doubles, UTF-16 strings) disagree on a few
documents. Each case is decided here or in `generate.py`, and listed in the README's section on contracts:

- an integral number written `4.0` or `4e0`: JSON Schema counts it as an integer, so `JsonInt` accepts it
  (as the int 4); `4.5` is still rejected.
- integers above 2^53: a double cannot tell 2^53 + 1 from 2^53, so the bound is 2^53 - 1 (I-JSON's,
  RFC 7493): every integer above it reads as a double above it too, and both sides reject it.
- a leap second (`23:59:60`): Python's datetime cannot hold it, so the schema says otherwise: `Timestamp`'s
  pattern allows seconds 00-59 only, and capture checks the same pattern.
- lone surrogate escapes (`"\\ud800"`): capture's JSON parser rejects them (they are not Unicode text and
  cannot be stored as UTF-8), so the schema says otherwise: `generate.py` gives every string a pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# Number.MAX_SAFE_INTEGER: the largest integer that every JSON reader holds exactly.
MAX_SAFE_INT = 2**53 - 1

# RFC 3339's date-time (what JSON Schema's `date-time` format means), narrowed to what Python's datetime
# holds: year 0001 onward, seconds 00-59 (no leap second), a numeric offset under 24 hours, `T` and `Z`
# in either case (RFC 3339 allows both). ASCII classes, not \d: Rust's \d (capture) matches any Unicode digit.
TIMESTAMP_PATTERN = (
    r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


@dataclass(frozen=True, slots=True)
class JsonInt:
    """An integer in [ge, le], written as any JSON number with an integral value (4, 4.0, 4e0)."""

    ge: int
    le: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # All in pydantic-core: a strict int or float first (no strings, no booleans; exact ints stay ints),
        # then lax int, which turns an integral float into an int, rejects 4.5 and checks the bounds.
        number = core_schema.union_schema(
            [core_schema.int_schema(strict=True), core_schema.float_schema(strict=True, allow_inf_nan=False)],
            custom_error_type="int_type",
        )
        return core_schema.chain_schema([number, core_schema.int_schema(strict=False, ge=self.ge, le=self.le)])

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "integer", "minimum": self.ge, "maximum": self.le}


@dataclass(frozen=True, slots=True)
class _Timestamp:
    """A datetime written as TIMESTAMP_PATTERN says, with a time zone."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # The pattern first (a Rust regex, in pydantic-core), then the datetime parser on the string (lax
        # only because the input is now a Python str; the pattern already rules out unix-time strings).
        text = core_schema.custom_error_schema(
            core_schema.str_schema(strict=True, pattern=TIMESTAMP_PATTERN),
            custom_error_type="timestamp_format",  # a readable dead-letter reason, not the pattern
            custom_error_message="Input should be an RFC 3339 timestamp with a time zone, like 2026-11-27T10:00:00Z",
        )
        moment = core_schema.datetime_schema(strict=False, tz_constraint="aware")
        # Python code builds events from datetime objects, as before: those need no pattern.
        instance = core_schema.datetime_schema(strict=True, tz_constraint="aware")
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([text, moment]), python_schema=instance
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}


NonNegativeInt = Annotated[int, JsonInt(ge=0, le=MAX_SAFE_INT)]
Timestamp = Annotated[datetime, _Timestamp()]
