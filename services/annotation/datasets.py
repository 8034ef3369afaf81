"""Finding and creating a queue's dataset in Argilla."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from flywheel_feedback.services.annotation.layout import dataset_settings, later_metadata_missing, missing_from

if TYPE_CHECKING:
    import argilla as rg

log = logging.getLogger(__name__)
PAGE = 500  # records per page while removing an older layout's suggestions


def find_dataset(client: rg.Argilla, *, name: str, workspace: str) -> Any | None:
    """The dataset of that name in the workspace, or None."""
    ws = _workspace(client, workspace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when a name is not found: that is an answer here
        return client.datasets(name=name, workspace=ws)


def ensure_dataset(
    client: rg.Argilla, *, name: str, workspace: str, min_submitted: int, queue: str | None = None
) -> Any:
    """The queue's dataset, created with our layout if it does not exist yet.

    A draft left by a creation that was cut short (fields made, never published) holds no records: it is
    deleted and created again. A ready dataset of that name without our fields and questions is someone
    else's: that is an error, never overwritten. One made by an older flywheel gains the metadata added since.
    """
    import argilla as rg
    from argilla._exceptions import ConflictError

    found = find_dataset(client, name=name, workspace=workspace)
    if found is not None and found.api_model().status == "draft":
        log.warning("dataset %r in %r is a draft left by an interrupted creation: recreating it", name, workspace)
        found.delete()
        found = None
    if found is None:
        dataset = rg.Dataset(
            name=name,
            workspace=_workspace(client, workspace),
            settings=dataset_settings(client, min_submitted=min_submitted, queue=queue),
            client=client,
        )
        try:
            found = dataset.create()
            log.info("created dataset %r in workspace %r", name, workspace)
        except ConflictError:
            # Another push created it between our lookup and our create.
            found = find_dataset(client, name=name, workspace=workspace)
            if found is None:
                raise
    missing = missing_from(found)
    if missing:
        raise ValueError(
            f"dataset {name!r} in workspace {workspace!r} exists but lacks {missing}: it was not created by "
            "flywheel; choose another FLYWHEEL_ARGILLA_DATASET_PREFIX or remove that dataset"
        )
    later = later_metadata_missing(client, found)
    if later:  # a dataset made by an older flywheel: the weak label moves from suggestions to metadata
        for prop in later:
            prop.dataset = found
            prop.create()
        dropped = drop_suggestions(client, found.id)
        log.info("dataset %r: added metadata %s, removed %d suggestions the UI would pre-select", name,
                 [p.name for p in later], dropped)
    return found


def drop_suggestions(client: rg.Argilla, dataset_id: Any) -> int:
    """Remove every suggestion from the dataset's records (an older flywheel suggested the weak label, which
    Argilla's UI pre-selects as the answer); how many were removed."""
    http = client.api.http_client
    removed, offset = 0, 0
    while True:
        page = http.get(f"/api/v1/datasets/{dataset_id}/records",
                        params={"include": "suggestions", "offset": offset, "limit": PAGE})
        page.raise_for_status()
        records = page.json()["items"]
        for record in records:
            ids = [str(s["id"]) for s in record.get("suggestions") or []]
            if ids:
                http.delete(f"/api/v1/records/{record['id']}/suggestions",
                            params={"ids": ",".join(ids)}).raise_for_status()
                removed += len(ids)
        if len(records) < PAGE:
            return removed
        offset += PAGE


def _workspace(client: rg.Argilla, name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = client.workspaces(name)
    if ws is None:
        raise ValueError(f"Argilla has no workspace {name!r} (FLYWHEEL_ARGILLA_WORKSPACE)")
    return ws
