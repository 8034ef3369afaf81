"""The raw event table of the lake (Delta, declared as RAW_EVENTS in tables.py): validated events, one commit
per captured flush.

Each commit also records, per Kafka topic and partition, the last offset it holds (a Delta application
transaction, app id `<writer>/<topic>/<partition>`). A writer drops what the table already holds before it
commits, and a commit fails when a concurrent one recorded the same partition, so neither a replay after a crash
or a failed offset commit nor two processes briefly sharing a partition add anything twice: the table holds each
Kafka record once. Columns are the union of all event fields (nullable), the Kafka position, the event date (the
partition column) and `raw`, the event's original JSON, which keeps metadata and unknown extra fields. Readers
still deduplicate by event_id, for what producers sent twice.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import IO

import numpy as np
import polars as pl
from pydantic import AwareDatetime, TypeAdapter

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import EVENT_JSON_SCHEMA, EVENTS_SCHEMA, RAW_EVENTS

log = logging.getLogger(__name__)

_TS = pl.Datetime("us", "UTC")
TS_ADAPTER: TypeAdapter[AwareDatetime] = TypeAdapter(AwareDatetime)


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


@dataclass(frozen=True, slots=True)
class PartitionRows:
    """One Kafka partition's rows in a flush, and the last offset they cover (invalid records included)."""

    topic: str
    partition: int
    frame: pl.DataFrame
    last_offset: int


def writer_app_id(writer: str, topic: str, partition: int) -> str:
    """The application-transaction id under which `writer` (e.g. a consumer group) records a partition's offset."""
    return f"{writer}/{topic}/{partition}"


def committed_offsets(
    store: ObjectStore, writer: str, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The last offset of each partition that the raw table holds from `writer` (absent: none yet)."""
    ids = {writer_app_id(writer, t, p): (t, p) for t, p in partitions}
    return {ids[app_id]: v for app_id, v in delta.transaction_versions(store, RAW_EVENTS, list(ids)).items()}


def write_events(
    store: ObjectStore, runs: Sequence[PartitionRows], *, writer: str, compression_level: int = 1
) -> int:
    """Append a flush to the raw table in one commit, with each partition's last offset; returns the rows added.

    Rows at or below the offset the table already records for their partition are dropped first, and that check
    holds inside the commit too: two capture processes that both hold a partition for a moment (a consumer group
    rebalancing) may both write its next range, and the second commit then fails on the first one's offsets,
    reads them and drops what they cover (`delta.append_once`)."""
    by_app_id = {writer_app_id(writer, r.topic, r.partition): r for r in runs}

    def rows_for(durable: Mapping[str, int]) -> tuple[pl.DataFrame, dict[str, int]] | None:
        parts: list[pl.DataFrame] = []
        transactions: dict[str, int] = {}
        for app_id, run in by_app_id.items():
            done = durable.get(app_id, -1)
            if run.last_offset <= done:
                continue  # all of it is in the table already
            frame = run.frame
            if frame.height and frame.item(0, "kafka_offset") <= done:
                frame = frame.filter(pl.col("kafka_offset") > done)
            parts.append(frame)
            transactions[app_id] = run.last_offset
        if not transactions:
            return None
        rows = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
        return rows.with_columns(pl.col("ts").dt.date().alias("date")), transactions

    return delta.append_once(
        store, RAW_EVENTS, list(by_app_id), rows_for, compression_level=compression_level
    )


def read_events(
    store: ObjectStore,
    *,
    types: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    since_date: date | None = None,
) -> pl.DataFrame:
    """All captured events as one frame, each event_id once (its first capture wins).

    `columns` narrows what is read (the Kafka position is always read, to order duplicates); `since_date` keeps the
    events of that date and later, reading only those partitions."""
    frame = delta.scan(store, RAW_EVENTS)
    position = ("kafka_topic", "kafka_partition", "kafka_offset")
    wanted = EVENTS_SCHEMA.names() if columns is None else [*columns, "event_id", *position]
    if since_date is not None:  # the event-date partitions from that date on, no others read
        frame = frame.filter(pl.col("date") >= since_date)
    frame = frame.select(list(dict.fromkeys(wanted)))
    if types is not None:
        frame = frame.filter(pl.col("type").is_in(list(types)))
    return (
        frame.sort(*position)
        .unique(subset="event_id", keep="first", maintain_order=True)
        .collect()
    )
