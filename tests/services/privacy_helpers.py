"""A lake with a person to erase, and the means to look for them everywhere.

Simulated traffic (with its planted personal data) plus a few interactions of one simulated user whose every
text carries a marker no one else typed: their prompts, the model's answers, their edits, corrections, ratings'
comments and follow-ups, and the annotators' corrections of their interactions. The lake goes through capture,
two labeler passes, gold answers, the outbox, two slice versions and the three exports, so the person is in
every table. `leaks` then looks for their id, markers and interaction ids in every table (read with the
`deltalake` package directly) and in the bytes of every file of the lake, Parquet decoded, log included.
"""

from __future__ import annotations

import io
import json
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from deltalake import DeltaTable

from flywheel_feedback.services.annotation.gold import GoldResponse, land
from flywheel_feedback.services.annotation.layout import QUEUES
from flywheel_feedback.services.annotation.outbox import enqueue
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.maintenance import lake_tables
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.settings import AnnotationSettings
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig, planted_card
from flywheel_feedback.services.slices.build import renew
from flywheel_feedback.services.slices.definitions import find_definition
from flywheel_feedback.services.slices.exports import export
from tests.conftest import require

from .slices_helpers import write_definition

NAME = "privacy-slice"
OPTIONS = LabelerOptions(folds=3)
START = datetime(2026, 11, 1, tzinfo=UTC)
HOURS = 24.0
PLANTED_PII = (  # what the simulator (and this module) plant: none of it may reach a derived table
    r"jane\.doe\d+@example\.com",
    r"\+1 415 555 \d{4}",
    r"4111 1111 \d{4} \d{4}",
    r"sk-live-\d{4}",
    r"quokka\.\d+@example\.org",
    r"\+44 20 7946 \d{4}",
)


@dataclass(frozen=True)
class Person:
    user_id: str
    markers: tuple[str, ...]  # a token in every text of theirs
    planted: tuple[str, ...]  # the ids of the interactions made for them here

    def needles(self, interaction_ids: Iterable[str]) -> list[str]:
        return [self.user_id, *self.markers, *interaction_ids]


def build_lake(root: Path, *, interactions: int = 1200) -> tuple[ObjectStore, Path, Person]:
    from flywheel_feedback.services.lake.store import LocalStore

    traffic = root / "traffic.jsonl"
    config = SimulationConfig(interactions=interactions, seed=23, hours=HOURS, start=START, pii_rate=0.12,
                              drift=False)
    simulate_to_file(config, traffic, root / "truth.parquet")
    lines = traffic.read_bytes().splitlines(keepends=True)
    events = [json.loads(line) for line in lines]
    users = Counter(e["user_id"] for e in events if e["type"] == "interaction" and e["task"] == "reply-draft")
    victim = users.most_common(1)[0][0]
    planted, person = _planted_events(victim, events)
    (root / "planted.jsonl").write_text("".join(json.dumps(e) + "\n" for e in planted))
    store = LocalStore(root / "lake")
    capture_file(traffic, store)
    capture_file(root / "planted.jsonl", store)
    label_pass(store, options=OPTIONS)
    _annotate(store, person, events)
    label_pass(store, options=OPTIONS)
    definitions = root / "slices"
    write_definition(definitions, NAME, size=5000, min_confidence=0.5)
    definition = find_definition(definitions, NAME)
    assert renew(store, definition).published
    assert renew(store, definition, force=True).published
    for kind in ("sft", "preference", "classifier"):
        assert export(store, kind, exclude_slices=False, min_confidence=0.5).published
    return store, definitions, person


def _planted_events(victim: str, events: list[dict[str, object]]) -> tuple[list[dict[str, object]], Person]:
    template = next(e for e in events if e["type"] == "interaction" and e["user_id"] == victim)
    out: list[dict[str, object]] = []
    markers, ids = [], []
    def event(iid: str, kind: str, at: datetime, **fields: object) -> dict[str, object]:
        return {"event_id": str(uuid.uuid4()), "type": kind, "schema_version": 1,
                "ts": at.isoformat().replace("+00:00", "Z"), "interaction_id": iid, **fields}

    for k in range(6):
        marker = f"Quokkamarker{k}x{uuid.uuid4().hex[:6]}"
        markers.append(marker)
        iid = str(uuid.uuid4())
        ids.append(iid)
        ts = START + timedelta(hours=HOURS - 3, minutes=20 * k)
        out.append(event(
            iid, "interaction", ts, session_id=template["session_id"], user_id=victim, app="support-bot",
            task="reply-draft",
            model={"id": "support-llm", "version": "2026-09-01", "provider": "internal"},
            input={"prompt": f"My order {marker} never came; write to quokka.{k}@example.org or call "
                             f"+44 20 7946 {k:04d}, card {planted_card(k)}."},
            output=f"Sorry about order {marker}: we will refund it.", latency_ms=300,
            metadata={"segment": "pro", "locale": "en-GB"},
        ))
        out.append(event(iid, "edit", ts + timedelta(seconds=40), text=f"Sorry about {marker}, refund on its way."))
        out.append(event(iid, "correction", ts + timedelta(seconds=80), text=f"We refund {marker} today."))
        out.append(event(iid, "rating", ts + timedelta(seconds=90), score=2, comment=f"not what I asked: {marker}"))
        out.append(event(iid, "followup", ts + timedelta(seconds=120), prompt=f"And what about {marker} again?"))
    return out, Person(victim, tuple(markers), tuple(ids))


def _annotate(store: ObjectStore, person: Person, events: list[dict[str, object]]) -> None:
    """Gold answers for the person's planted interactions and a share of everyone's; outbox items for theirs."""
    theirs = [str(e["interaction_id"]) for e in events if e["type"] == "interaction" and e["user_id"] == person.user_id]
    others = [str(e["interaction_id"]) for e in events if e["type"] == "interaction" and e["task"] == "reply-draft"]
    responses = []
    for n, iid in enumerate([*person.planted, *theirs[:3], *others[::7]]):
        marker = person.markers[n] if n < len(person.planted) else None
        correction = f"Refund {marker} and mail quokka.{n}@example.org" if marker else (
            f"Card {planted_card(n)} on file; mail jane.doe{n}@example.com" if n % 3 == 0 else None)
        responses.append(GoldResponse(
            interaction_id=iid, queue="audit", dataset="flywheel-audit", annotator="ann-1", annotator_id="a-1",
            label=n % 2, correction=correction, submitted_at=START + timedelta(days=2, seconds=n),
            response_id=f"r{n}", source="reconcile",
        ))
    land(store, responses)
    items = pl.DataFrame({"interaction_id": [*person.planted, *theirs], "queue": "audit", "reason": "test",
                          "priority": 1.0})
    enqueue(store, items.unique("interaction_id"), source="test")


def table_texts(store: ObjectStore) -> dict[str, str]:
    """Every Delta table of the lake as JSON lines, read with the deltalake package (not through flywheel)."""
    found = {}
    for name in lake_tables(store):
        table = DeltaTable(store.table_uri(name), storage_options=store.storage_options())
        frame = pl.from_arrow(table.to_pyarrow_table())
        assert isinstance(frame, pl.DataFrame)
        buf = io.BytesIO()
        frame.with_columns(pl.col(pl.Binary).cast(pl.String)).write_ndjson(buf)
        found[name] = buf.getvalue().decode()
    return found


def file_texts(store: ObjectStore) -> dict[str, str]:
    """Every file of the lake as text: its bytes, and for Parquet its decoded rows and footer statistics."""
    found = {}
    for key in store.list(""):
        data = store.get(key)
        text = data.decode("utf-8", errors="replace")
        if key.endswith(".parquet"):
            parquet = pq.ParquetFile(io.BytesIO(data))
            text += repr(parquet.read().to_pylist())
            meta = parquet.metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    stats = meta.row_group(g).column(c).statistics
                    if stats is not None and stats.has_min_max:
                        text += f"{stats.min!r} {stats.max!r}"
        found[key] = text
    return found


def leaks(texts: dict[str, str], needles: Iterable[str]) -> dict[str, list[str]]:
    """Which needles each text holds (only those holding one)."""
    wanted = [n for n in needles if n]
    found = {name: [n for n in wanted if n in text] for name, text in texts.items()}
    return {name: hits for name, hits in found.items() if hits}


def interactions_of(texts: dict[str, str], user_id: str) -> set[str]:
    """The person's interaction ids, from the raw events' JSON lines."""
    ids = set()
    for line in texts["raw/events"].splitlines():
        row = json.loads(line)
        if row.get("user_id") == user_id:
            ids.add(row["interaction_id"])
    return ids


def argilla_settings(prefix: str) -> AnnotationSettings:
    """The shared stack's Argilla (its owner's key), with a dataset-name prefix of the test's own."""
    return AnnotationSettings(url=require("FLYWHEEL_TEST_ARGILLA_URL"),
                              api_key=require("FLYWHEEL_TEST_ARGILLA_API_KEY"),
                              dataset_prefix=prefix, retries=1, retry_backoff_s=0.2)


def argilla_records(settings: AnnotationSettings) -> set[tuple[str, str]]:
    """(dataset, record id = interaction id) of every record in the queue datasets of the prefix, read with the
    SDK (an interaction routed to two queues has a record in each)."""
    return {(dataset.name, str(record.id)) for dataset in _datasets(settings) for record in dataset.records}


def of_interactions(records: set[tuple[str, str]], ids: set[str]) -> set[tuple[str, str]]:
    return {(dataset, record) for dataset, record in records if record in ids}


def delete_datasets(settings: AnnotationSettings) -> None:
    for dataset in _datasets(settings):
        dataset.delete()


def _datasets(settings: AnnotationSettings) -> list[Any]:
    import argilla as rg

    assert settings.api_key is not None
    client = rg.Argilla(api_url=settings.url, api_key=settings.api_key.get_secret_value())
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when a name is not found
        for queue in QUEUES:
            dataset = client.datasets(name=f"{settings.dataset_prefix}{queue}", workspace=settings.workspace)
            if dataset is not None:
                found.append(dataset)
    return found
