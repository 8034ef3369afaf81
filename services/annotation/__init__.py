"""Annotation sync with Argilla: the outbox goes out, the annotators' answers come back as gold labels.

- `records`: outbox items joined to their labels, free text masked, turned into record payloads (pure).
- `layout`: what an Argilla dataset of a queue looks like (fields, questions, metadata) and its name.
- `datasets`: finding or creating a queue's dataset in Argilla.
- `outbox`: the outbox Delta table: items queued once (MERGE), their sent state set in place.
- `push`: pending items to Argilla, one dataset per queue, in confirmed batches.
- `webhooks`: Standard Webhooks verification and replay protection (pure).
- `receiver`: the HTTP receiver of Argilla's webhooks, which lands submitted responses as gold labels.
- `reconcile`: reads submitted responses back from Argilla, so a missed webhook loses nothing.
- `gold`: the gold Delta table, one row per response version (MERGE; readers keep the latest answer).
- `client`: connecting to Argilla and telling "unreachable" from "refused".
"""
