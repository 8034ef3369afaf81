"""The raw event table of the lake: validated events as Parquet, one file per captured batch.

Layout: raw/events/date=YYYY-MM-DD/<topic>+<partition>+<first offset>+<last offset>.parquet,
the date being the event's own `ts` date. The name is fixed by the Kafka range, so replaying a
batch rewrites the same file. Columns are the union of all event fields (nullable), the Kafka
position, and `raw`, the event's original JSON, which keeps metadata and unknown extra fields.
Readers deduplicate by event_id.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from datetime import date
from typing import IO

import numpy as np
import polars as pl
from pydantic import AwareDatetime, TypeAdapter

from flywheel_feedback.services.lake.store import ObjectStore

log = logging.getLogger(__name__)

RAW_EVENTS_PREFIX = "raw/events"

_MODEL = pl.Struct({"id": pl.String, "version": pl.String, "provider": pl.String})
_MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
_INPUT = pl.Struct({"prompt": pl.String, "messages": pl.List(_MESSAGE)})

# What polars reads from each event's JSON. Types were already checked by the pydantic
# contract before a line gets here, so this only shapes columns.
EVENT_JSON_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "type": pl.String(),
    "schema_version": pl.Int64(),
    "ts": pl.String(),
    "interaction_id": pl.String(),
    "session_id": pl.String(),
    "user_id": pl.String(),
    "app": pl.String(),
    "task": pl.String(),
    "model": _MODEL,
    "input": _INPUT,
    "output": pl.String(),
    "latency_ms": pl.Int64(),
    # polars keeps an object read into a String column as its JSON text: small and cheap to query
    "metadata": pl.String(),
    "thumbs": pl.String(),
    "score": pl.Int64(),
    "comment": pl.String(),
    "text": pl.String(),
    "new_interaction_id": pl.String(),
    "chars": pl.Int64(),
    "reason": pl.String(),
    "prompt": pl.String(),
    "next_interaction_id": pl.String(),
    "dwell_ms": pl.Int64(),
}

POSITION_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "kafka_topic": pl.String(),
    "kafka_partition": pl.Int32(),
    "kafka_offset": pl.Int64(),
    "raw": pl.String(),
}

EVENTS_SCHEMA = pl.Schema({**EVENT_JSON_SCHEMA, **POSITION_SCHEMA})
_TS = pl.Datetime("us", "UTC")
TS_ADAPTER: TypeAdapter[AwareDatetime] = TypeAdapter(AwareDatetime)


def batch_file_key(topic: str, partition: int, first: int, last: int, day: date) -> str:
    return f"{RAW_EVENTS_PREFIX}/date={day.isoformat()}/{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def events_frame(lines: Sequence[bytes], *, topic: str, partition: int, offsets: Sequence[int]) -> pl.DataFrame:
    """Build the table rows for validated JSON lines (one JSON object per line)."""
    body = b"".join(line + b"\n" for line in lines)
    return json_lines_frame([body], topic=topic, partition=partition, offsets=offsets)


def json_lines_frame(
    chunks: Sequence[bytes], *, topic: str, partition: int, offsets: Sequence[int]
) -> pl.DataFrame:
    """Build the table rows for validated JSON lines, given as chunks of whole lines that each end in a newline.

    Nothing is done per row in Python and the chunks are not copied into one body: polars
    parses them as they are, and `raw` is a view of them (the GIL stays free meanwhile).
    """
    rows = len(offsets)
    if not rows:
        return pl.DataFrame(schema=EVENTS_SCHEMA)
    try:
        sources: list[IO[bytes]] = [io.BytesIO(c) for c in chunks]
        body = pl.read_ndjson(sources, schema=EVENT_JSON_SCHEMA)
        if body.height != rows:
            raise ValueError(f"{body.height} rows for {rows} lines")
    except BaseException as e:  # polars raises PanicException (a BaseException) on some inputs
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        log.warning("batch of %d lines did not parse as one (%s); parsing line by line", rows, e)
        body = pl.concat([_parse_line(line) for line in _lines(chunks)], how="vertical")
    return body.with_columns(
        _parse_ts(body.get_column("ts")),
        pl.lit(topic, dtype=pl.String).alias("kafka_topic"),
        pl.lit(partition, dtype=pl.Int32).alias("kafka_partition"),
        pl.Series("kafka_offset", offsets, dtype=pl.Int64),
        _raw_lines(chunks, rows),
    )


# Arrow's string view: length, first 4 bytes, and where the rest is (which buffer, at what offset).
_VIEW = np.dtype([("length", "<i4"), ("prefix", "V4"), ("buffer", "<i4"), ("offset", "<i4")])
_INLINE = 12  # strings up to this length live in the view itself


def _raw_lines(chunks: Sequence[bytes], rows: int) -> pl.Series:
    """The lines as a String column that points into the chunks instead of copying them."""
    data = [np.frombuffer(c, dtype=np.uint8) for c in chunks]
    ends = [np.flatnonzero(d == ord("\n")) for d in data]
    starts = [np.concatenate(([0], e[:-1] + 1)) for e in ends]
    lengths = np.concatenate([e - s for s, e in zip(starts, ends, strict=True)])
    if len(lengths) != rows or lengths.min() <= _INLINE or max(map(len, chunks)) >= 2**31:
        # not the shape views are built for here (an event is never this short): copy instead
        return pl.Series("raw", _lines(chunks), dtype=pl.Binary).cast(pl.String)
    views = np.empty(rows, dtype=_VIEW)
    views["length"] = lengths
    prefixes = [d[s[:, None] + np.arange(4)] for d, s in zip(data, starts, strict=True)]
    views["prefix"] = np.concatenate(prefixes).view("V4").ravel()
    views["buffer"] = np.repeat(np.arange(len(chunks), dtype=np.int32), [len(e) for e in ends])
    views["offset"] = np.concatenate(starts)
    import pyarrow as pa  # type: ignore[import-untyped]  # only here: it costs 25 MB to import

    array = pa.Array.from_buffers(pa.string_view(), rows, [None, pa.py_buffer(views), *map(pa.py_buffer, chunks)])
    return pl.Series("raw", array)


def _lines(chunks: Sequence[bytes]) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in chunks:
        lines += chunk.split(b"\n")
        if not lines[-1]:  # the newline that ends the chunk
            lines.pop()
    return lines


def _parse_ts(text: pl.Series) -> pl.Series:
    """ISO 8601 with an offset, in UTC. The few forms chrono's %+ misses get pydantic's parse."""
    parsed = text.str.to_datetime(format="%+", time_zone="UTC", time_unit="us", strict=False)
    missed = parsed.is_null() & text.is_not_null()
    if missed.any():
        fixed = [None if t is None else TS_ADAPTER.validate_python(t) for t in text.filter(missed).to_list()]
        parsed = parsed.scatter(missed.arg_true(), pl.Series(fixed, dtype=_TS))
    return parsed.alias("ts")


def _parse_line(line: bytes) -> pl.DataFrame:
    """One line on its own; a line polars cannot shape keeps its ids, and `raw` keeps the rest."""
    try:
        return pl.read_ndjson(io.BytesIO(line), schema=EVENT_JSON_SCHEMA)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        event = json.loads(line)
        ids = {k: event.get(k) for k in ("event_id", "type", "interaction_id")}
        return pl.DataFrame([ids], schema=EVENT_JSON_SCHEMA)


def write_events(
    store: ObjectStore,
    frame: pl.DataFrame,
    *,
    topic: str,
    partition: int,
    first_offset: int,
    last_offset: int,
    compression_level: int = 1,
) -> list[str]:
    """Write one captured batch, split by event date. Returns the keys written."""
    keys: list[str] = []
    if frame.is_empty():
        return keys
    days = frame.get_column("ts").dt.date()
    if days.n_unique() == 1:  # the usual case: no need to split (and copy) the frame
        parts = [(days[0], frame)]
    else:
        by_day = frame.with_columns(days.alias("_day")).group_by("_day", maintain_order=True)
        parts = [(day, part.drop("_day")) for (day,), part in by_day]
    for day, part in parts:
        key = batch_file_key(topic, partition, first_offset, last_offset, day)
        buf = io.BytesIO()
        part.write_parquet(buf, compression="zstd", compression_level=compression_level)
        store.put(key, buf.getvalue())
        keys.append(key)
    return keys


def read_events(
    store: ObjectStore, *, types: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """All captured events as one frame, each event_id once (its first capture wins).

    `columns` narrows what is read (the Kafka position is always read, to order duplicates)."""
    keys = [k for k in store.list(RAW_EVENTS_PREFIX) if k.endswith(".parquet")]
    if not keys:
        return pl.DataFrame(schema=EVENTS_SCHEMA)
    local = [store.local_path(k) for k in keys]
    sources: list[pl.LazyFrame]
    if all(p is not None for p in local):
        # files written before a column was added get it as nulls
        sources = [pl.scan_parquet([str(p) for p in local], schema=EVENTS_SCHEMA, missing_columns="insert")]
    else:
        sources = [pl.read_parquet(io.BytesIO(store.get(k))).lazy() for k in keys]
    frame = pl.concat(sources, how="vertical")
    if columns is not None:
        position = ("kafka_topic", "kafka_partition", "kafka_offset")
        frame = frame.select(list(dict.fromkeys([*columns, "event_id", *position])))
    if types is not None:
        frame = frame.filter(pl.col("type").is_in(list(types)))
    return (
        frame.sort("kafka_topic", "kafka_partition", "kafka_offset")
        .unique(subset="event_id", keep="first", maintain_order=True)
        .collect()
    )
