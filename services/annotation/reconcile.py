"""Reconcile: read the submitted responses of every queue dataset back from Argilla into the gold labels.

Webhooks are fast but can be missed (receiver down, deliveries exhausted their retries, responses logged in
bulk emit no response events). Reconcile asks Argilla's search for the records that have a submitted response
(the owner sees everyone's), pages through them in a stable order, and lands the response versions the gold
table does not hold yet. Running it twice lands nothing and commits nothing the second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flywheel_feedback.services.annotation.client import ArgillaUnavailableError, connect, is_unavailable
from flywheel_feedback.services.annotation.datasets import find_dataset
from flywheel_feedback.services.annotation.gold import GoldResponse, from_search_record, land, landed_versions
from flywheel_feedback.services.annotation.layout import check_queues, dataset_name
from flywheel_feedback.services.lake.store import ObjectStore

if TYPE_CHECKING:
    import argilla as rg

    from flywheel_feedback.services.settings import AnnotationSettings

log = logging.getLogger(__name__)

PAGE: Final = 500  # records per search request (Argilla allows up to 1000)
LAND_CHUNK: Final = 5_000  # responses per gold commit

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ReconcileResult:
    seen: int = 0  # submitted responses found in Argilla
    landed: int = 0  # of those, new to the lake
    per_dataset: dict[str, int] = field(default_factory=dict)
    versions: tuple[int, ...] = ()  # the gold table's versions this reconcile committed
    error: str | None = None
    seconds: float = 0.0


def reconcile(
    store: ObjectStore,
    settings: AnnotationSettings,
    *,
    client: rg.Argilla | None = None,
    queues: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> ReconcileResult:
    say = progress or (lambda _: None)
    started = time.perf_counter()
    chosen = check_queues(queues)
    seen = 0
    per_dataset: dict[str, int] = {}
    versions: list[int] = []
    try:
        client = client or connect(settings)
        usernames = _usernames(client)
        known = landed_versions(store)
        for queue in chosen:
            name = dataset_name(settings.dataset_prefix, queue)
            dataset = find_dataset(client, name=name, workspace=settings.workspace)
            if dataset is None:
                continue
            fresh: list[GoldResponse] = []
            for response in _submitted(client, dataset.id, name, usernames, settings.dataset_prefix):
                seen += 1
                if response.version not in known:
                    fresh.append(response)
                    known.add(response.version)
            for start in range(0, len(fresh), LAND_CHUNK):
                version = land(store, fresh[start : start + LAND_CHUNK])
                if version is not None:
                    versions.append(version)
            per_dataset[name] = len(fresh)
            say(f"{name}: {len(fresh)} new submitted responses")
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        error = str(exc) if isinstance(exc, ArgillaUnavailableError) else f"Argilla at {settings.url} is unreachable"
        log.error("reconcile stopped: %s (%s); what was landed stays", error, type(exc).__name__)
        return ReconcileResult(seen, sum(per_dataset.values()), per_dataset, tuple(versions), error,
                               time.perf_counter() - started)
    result = ReconcileResult(seen, sum(per_dataset.values()), per_dataset, tuple(versions), None,
                             time.perf_counter() - started)
    log.info("reconcile: %d submitted responses seen, %d landed", result.seen, result.landed)
    return result


def _submitted(
    client: rg.Argilla, dataset_id: Any, name: str, usernames: dict[str, str], prefix: str
) -> Iterator[GoldResponse]:
    """Every submitted response of a dataset, through the search API (the SDK's record model drops the
    response ids and times, so the SDK's HTTP client is used directly)."""
    body = {
        "filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                             "values": ["submitted"]}]},
        # A stable order, so paging does not skip or repeat records while annotators keep working.
        "sort": [
            {"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"},
            {"scope": {"entity": "record", "property": "id"}, "order": "asc"},
        ],
    }
    offset = 0
    while True:
        response = client.http_client.post(
            f"/api/v1/datasets/{dataset_id}/records/search",
            json=body,
            params={"include": ["responses"], "offset": offset, "limit": PAGE},
        )
        response.raise_for_status()
        page = response.json()
        items = page.get("items") or []
        for item in items:
            yield from from_search_record(item["record"], dataset=name, usernames=usernames, prefix=prefix)
        offset += len(items)
        if not items or offset >= int(page.get("total") or 0):
            return


def _usernames(client: rg.Argilla) -> dict[str, str]:
    """user id -> username, so gold rows name annotators the same way webhooks do (owners may list users)."""
    from argilla._exceptions import ForbiddenError

    try:
        return {str(user.id): user.username for user in client.api.users.list()}
    except ForbiddenError:
        log.warning("this API key may not list users: annotators are named by their user id")
        return {}
