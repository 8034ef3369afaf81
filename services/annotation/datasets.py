"""Finding and creating a queue's dataset in Argilla."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from flywheel_feedback.services.annotation.layout import dataset_settings, missing_from

if TYPE_CHECKING:
    import argilla as rg

log = logging.getLogger(__name__)


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
    else's: that is an error, never overwritten.
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
    return found


def _workspace(client: rg.Argilla, name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = client.workspaces(name)
    if ws is None:
        raise ValueError(f"Argilla has no workspace {name!r} (FLYWHEEL_ARGILLA_WORKSPACE)")
    return ws
