"""What a queue's Argilla dataset looks like: its name, fields, questions and metadata.

One dataset per queue, named `<prefix><queue>`. The names here are the contract between the push (which
fills fields and metadata) and the way back (webhooks and reconcile read the answers).

The weak label is shown, never offered as an Argilla suggestion: argilla-server 2.8's UI pre-selects a pending
record's suggestion as the answer (Enter would submit it unread), so the label model's guess would come back
as gold. It is in the signals field and in metadata (filterable), and the quality question starts empty.

The input is a chat field, `conversation`, for every record: a chat interaction's whole input (system prompt,
earlier turns, tool messages, the user's last message) in order, a plain prompt as one user message. One field
type serves a queue holding both kinds, since a dataset's fields are fixed once it is published (argilla-server
2.8 refuses to add one). A dataset made before this layout keeps its `input` text field: its records get the
conversation rendered as text there (`LEGACY_FIELD_INPUT`), under the same name, so answers keep mapping back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

if TYPE_CHECKING:
    import argilla as rg

Queue = Literal["uncertain", "suspect", "conflict", "audit", "adjudication", "renewal"]
QUEUES: Final[tuple[Queue, ...]] = get_args(Queue)

FIELD_CONVERSATION: Final = "conversation"
LEGACY_FIELD_INPUT: Final = "input"  # the input of datasets made before the conversation field (text)
FIELD_OUTPUT: Final = "output"
FIELD_EDIT: Final = "user_edit"
FIELD_SIGNALS: Final = "signals"
QUESTION_LABEL: Final = "quality"
QUESTION_CORRECTION: Final = "corrected_output"
# the weak label, its confidence and the label model that made it (no suggestion: see above)
META_WEAK_LABEL: Final = "weak_label"
META_WEAK_CONFIDENCE: Final = "weak_confidence"
META_LABEL_MODEL: Final = "label_model"
TERMS_METADATA: Final = ("task", "model_version", "queue", "reason", META_WEAK_LABEL, META_LABEL_MODEL)
FLOAT_METADATA: Final = ("priority", META_WEAK_CONFIDENCE)
# metadata added after the first datasets were made: added to a dataset that lacks it, not a reason to refuse it
LATER_METADATA: Final = (META_WEAK_LABEL, META_LABEL_MODEL, META_WEAK_CONFIDENCE)

# Argilla label <-> class of the label model (0 = bad, 1 = good).
LABEL_CLASSES: Final[dict[str, int]] = {"bad": 0, "good": 1}
CLASS_LABELS: Final[dict[int, str]] = {v: k for k, v in LABEL_CLASSES.items()}


def check_queues(queues: Iterable[str] | None) -> list[str]:
    """The queues asked for (all of them for None), each checked to be one of ours."""
    chosen: list[str] = list(QUEUES) if queues is None else [queues] if isinstance(queues, str) else list(queues)
    wrong = sorted(set(chosen) - set(QUEUES))
    if wrong:
        raise ValueError(f"expected queues among {list(QUEUES)}, got {wrong}")
    return chosen


def dataset_name(prefix: str, queue: str) -> str:
    return f"{prefix}{queue}"


def queue_of(prefix: str, name: str) -> str | None:
    """The queue a dataset serves, or None for a dataset that is not ours (webhooks are global)."""
    if not name.startswith(prefix):
        return None
    queue = name[len(prefix) :]
    return queue if queue in QUEUES else None


GUIDELINES: Final = (
    "Judge the model's output as the answer to the conversation: is it good or bad for this user? The "
    "conversation is what the model was given, in order: a system prompt, earlier turns and tool results when "
    "there were any, and the user's last message, which the output answers (a plain prompt is one user "
    "message). If you can, write the output it should have given. The signals say what the user did with it "
    "and the weak label (what the user's behaviour suggests) with its confidence: a hint, not an answer, so no "
    "answer is pre-selected. Personal data is masked ([EMAIL_1], [PHONE_1], ...): judge the output as if the "
    "real values were there."
)
# What each queue means, what to check, and whom to trust when the evidence disagrees.
QUEUE_GUIDELINES: Final[dict[str, str]] = {
    "uncertain": "The label model could not decide. Read the output against the conversation; the signals may be few.",
    "suspect": "cleanlab thinks the weak label is wrong: the weak label is likely the wrong answer here. Decide "
               "from the text, not from the weak label.",
    "conflict": "The user's explicit rating contradicts what their behaviour says. Trust the text first; when it "
                "does not settle it, trust the explicit rating over the implicit signals (a rating is a deliberate "
                "act; an edit or a retry can have other reasons).",
    "audit": "A uniform random sample, to measure label quality. Answer as you would any item: do not look for "
             "a problem that is not there.",
    "adjudication": "Annotators disagreed about this item. Your answer settles it: read the output carefully and "
                    "write the output it should have given if the others missed something.",
    "renewal": "This item fills a gap of an eval slice. Your answer makes it gold for the slice: be exact.",
}


def guidelines_for(queue: str | None) -> str:
    extra = QUEUE_GUIDELINES.get(queue or "")
    return GUIDELINES if extra is None else f"{GUIDELINES}\n\nThis queue ({queue}): {extra}"


def confidence_text(value: float) -> str:
    """A confidence as annotators read it, the same way everywhere (reasons, signals, the weak label's metadata):
    truncated to two decimals, so 0.699 reads 0.69 and never passes for the 0.7 threshold."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


def dataset_settings(client: rg.Argilla, *, min_submitted: int, queue: str | None = None) -> rg.Settings:
    """The settings a queue's dataset is created with (the guidelines say what the queue is for)."""
    import argilla as rg

    return rg.Settings(
        guidelines=guidelines_for(queue),
        fields=[
            rg.ChatField(name=FIELD_CONVERSATION, title="Conversation (what the model was given)",
                         use_markdown=False, _client=client),
            rg.TextField(name=FIELD_OUTPUT, title="Model output", client=client),
            rg.TextField(name=FIELD_EDIT, title="The user's edit (removed ~~struck~~, added **bold**)",
                         required=False, use_markdown=True, client=client),
            rg.TextField(name=FIELD_SIGNALS, title="Signals", use_markdown=True, client=client),
        ],
        questions=[
            rg.LabelQuestion(
                name=QUESTION_LABEL,
                title="Is the output good?",
                labels={"good": "good", "bad": "bad"},
                client=client,
            ),
            rg.TextQuestion(
                name=QUESTION_CORRECTION,
                title="Corrected output (optional)",
                required=False,
                client=client,
            ),
        ],
        metadata=[
            *(rg.TermsMetadataProperty(name=name, client=client) for name in TERMS_METADATA),
            *(rg.FloatMetadataProperty(name=name, client=client) for name in FLOAT_METADATA),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def missing_from(dataset: Any) -> list[str]:
    """What a found dataset lacks of our layout (a dataset someone else created under our name), apart from
    the metadata added later (`later_metadata_missing`)."""
    have = _names(dataset)
    want = {FIELD_OUTPUT, FIELD_EDIT, FIELD_SIGNALS, QUESTION_LABEL, QUESTION_CORRECTION}
    want |= set(TERMS_METADATA) | set(FLOAT_METADATA)
    if not {FIELD_CONVERSATION, LEGACY_FIELD_INPUT} & have:
        want.add(FIELD_CONVERSATION)
    return sorted(want - have - set(LATER_METADATA))


def has_conversation_field(dataset: Any) -> bool:
    """True for a dataset of the current layout; False for one that still has the older `input` text field."""
    return any(f.name == FIELD_CONVERSATION and f.type == "chat" for f in dataset.settings.fields)


def later_metadata_missing(
    client: rg.Argilla, dataset: Any
) -> list[rg.TermsMetadataProperty | rg.FloatMetadataProperty]:
    """The metadata properties added to our layout since `dataset` was made, for it to gain."""
    import argilla as rg

    have = _names(dataset)
    return [rg.FloatMetadataProperty(name=name, client=client) if name in FLOAT_METADATA
            else rg.TermsMetadataProperty(name=name, client=client)
            for name in LATER_METADATA if name not in have]


def _names(dataset: Any) -> set[str]:
    settings = dataset.settings
    properties = [*settings.fields, *settings.questions, *settings.metadata]
    return {p.name for p in properties}
