"""What the simulated product is about: apps, tasks, topic clusters and the texts they produce.

Each topic has prompt templates and two kinds of answers: good ones that address the prompt,
and bad ones (generic, off-topic, truncated or wrong) of the kind real models produce. The
label stages never see which is which; the simulator's truth file does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    prompts: tuple[str, ...]
    good: tuple[str, ...]
    bad: tuple[str, ...]
    slots: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    app: str
    name: str
    topics: tuple[Topic, ...]


_GENERIC_BAD = (
    "I'm sorry, I can't help with that request.",
    "As an AI language model, I do not have access to that information.",
    "Please contact support for more details.",
    "There are many factors to consider. It depends on your situation.",
)

SUPPORT = Task(
    app="support-bot",
    name="reply-draft",
    topics=(
        Topic(
            "password-reset",
            (
                "How do I reset my password on the {slot}? The link keeps expiring.",
                "I forgot my password and the reset email never arrives on {slot}.",
                "Can't log in on {slot}, reset link says invalid token",
            ),
            (
                "To reset your password on the {slot}, open Settings > Account > Reset password. The link is valid "
                "for 15 minutes, so open it on the same device right after you request it.",
                "Request a new reset link from the {slot} login screen and check your spam folder; links expire "
                "after 15 minutes and only the newest one works.",
            ),
            (
                "Passwords should contain at least eight characters, including numbers and symbols.",
                "To change your billing address, go to Billing > Addresses.",
                "To reset your",
            ),
            ("mobile app", "web dashboard", "desktop client", "tablet app"),
        ),
        Topic(
            "billing",
            (
                "Why was I charged twice for my {slot} subscription this month?",
                "How can I get a refund for the {slot} plan I cancelled?",
                "My invoice for the {slot} plan shows the wrong VAT number.",
            ),
            (
                "I'm sorry about the double charge on your {slot} subscription. One of the two payments is a "
                "temporary authorisation and will drop off within 3-5 business days; if not, we refund it.",
                "Refunds for the {slot} plan are issued to the original payment method within 5 business days "
                "of cancellation. You can follow the status under Billing > History.",
            ),
            (
                "Our {slot} plan includes unlimited projects and priority support.",
                "Please restart the application and try again.",
            ),
            ("Pro", "Team", "Enterprise", "Starter"),
        ),
        Topic(
            "shipping",
            (
                "Where is my order? The tracking for {slot} has not moved for a week.",
                "Can I change the delivery address of order {slot}?",
            ),
            (
                "Order {slot} is held at the regional depot because of a customs check; it should move within 2 days "
                "and you'll get an e-mail with the new delivery date.",
                "You can change the address of order {slot} until it ships: open Orders, choose the order and "
                "select Edit delivery.",
            ),
            (
                "Shipping is free on orders over 50 euros.",
                "Your order has been delivered.",
            ),
            ("#4471", "#9120", "#3385", "#7702"),
        ),
        Topic(
            "data-export",
            (
                "How do I export all my {slot} data to CSV?",
                "Is there an API to download {slot} history in bulk?",
            ),
            (
                "Go to Settings > Data > Export, pick {slot} and CSV, and we e-mail you a download link when the "
                "export is ready (usually under 10 minutes).",
                "Yes: the /v2/exports endpoint returns {slot} history in pages of 1000 records; use the cursor "
                "field to fetch the next page.",
            ),
            (
                "Exporting is not possible.",
                "CSV stands for comma-separated values.",
            ),
            ("invoice", "usage", "audit log", "contact"),
        ),
    ),
)

CODE = Task(
    app="code-assistant",
    name="explain-code",
    topics=(
        Topic(
            "python-errors",
            (
                "What does this Python error mean: {slot}?",
                "I keep getting {slot} when I run my script, how do I fix it?",
            ),
            (
                "{slot} means Python looked for something that is not there at that point; print the value just "
                "before the failing line and check the spelling and the import.",
                "You get {slot} because the object is not what the code expects; check its type with type(x) and "
                "follow the traceback to the first line in your own code.",
            ),
            (
                "Python is a popular programming language created by Guido van Rossum.",
                "Try reinstalling your operating system.",
                "{slot} means",
            ),
            ("KeyError", "AttributeError", "ImportError", "TypeError"),
        ),
        Topic(
            "sql",
            (
                "Why is my {slot} query so slow on a big table?",
                "How do I write a {slot} that returns one row per customer?",
            ),
            (
                "A slow {slot} on a big table usually means a full scan: add an index on the columns in the WHERE "
                "and JOIN clauses and check the plan with EXPLAIN.",
                "Group by the customer id in your {slot} and aggregate the other columns, or use a window function "
                "with row_number() and keep row 1.",
            ),
            (
                "SQL is a domain-specific language used in programming.",
                "Use a NoSQL database instead.",
            ),
            ("JOIN", "GROUP BY", "subquery", "UPDATE"),
        ),
        Topic(
            "git",
            (
                "How do I undo my last {slot} in git?",
                "git says {slot}, what should I do?",
            ),
            (
                "To undo the last {slot}, run git reset --soft HEAD~1 if it is not pushed; if it is, use git revert "
                "so history stays intact.",
                "When git says {slot}, run git status first; it tells you which files conflict and what command "
                "finishes or aborts the operation.",
            ),
            (
                "Git was created by Linus Torvalds in 2005.",
                "Delete the repository and clone it again.",
            ),
            ("commit", "merge", "rebase", "push"),
        ),
    ),
)

WRITING = Task(
    app="writing-helper",
    name="rewrite",
    topics=(
        Topic(
            "email-tone",
            (
                "Make this e-mail to my {slot} sound more polite: send me the report today.",
                "Rewrite this message to my {slot} so it is friendlier but still firm.",
            ),
            (
                "Hi, could you please send me the report by the end of today? It would help me a lot to prepare "
                "for tomorrow's meeting with the {slot}. Thank you!",
                "Thanks for your help so far. I'd appreciate it if we could settle this with the {slot} this week, "
                "as the deadline is close.",
            ),
            (
                "SEND ME THE REPORT TODAY.",
                "E-mail is a method of exchanging messages between people.",
            ),
            ("manager", "client", "landlord", "team"),
        ),
        Topic(
            "summary",
            (
                "Summarise these meeting notes about the {slot} in three bullet points.",
                "Give me a short summary of the {slot} discussion for my boss.",
            ),
            (
                "- The {slot} is on track for the March release.\n- Two open risks: hiring and vendor delays.\n"
                "- Next review in two weeks.",
                "The team agreed on the {slot} scope, assigned owners for the open items and will report progress "
                "next Monday.",
            ),
            (
                "Meetings are gatherings of people to discuss topics.",
                "- The",
            ),
            ("roadmap", "budget", "migration", "launch"),
        ),
    ),
)

# A topic that appears only after the drift point: production moves, the eval set must follow.
NEW_TOPIC = Topic(
    "account-deletion",
    (
        "How do I permanently delete my account and all my {slot}?",
        "I want you to erase my {slot} under GDPR, how?",
    ),
    (
        "You can delete your account under Settings > Privacy > Delete account; your {slot} is erased within "
        "30 days, and you get a confirmation e-mail when it is done.",
        "Send the request from Settings > Privacy > Data request; we erase your {slot} within 30 days as GDPR "
        "requires and confirm by e-mail.",
    ),
    (
        "We value your privacy.",
        "To reset your password, open Settings > Account.",
    ),
    ("data", "messages", "payment details", "photos"),
)

TASKS: tuple[Task, ...] = (SUPPORT, CODE, WRITING)

# A chat product: the support topics as multi-turn sessions. Every turn's input is the whole conversation:
# this system prompt, the earlier turns (with the answers the user saw) and, for lookups, a tool message.
CHAT = Task(app="support-chat", name="chat", topics=SUPPORT.topics)
CHAT_SYSTEM = (
    "You are the support assistant of Acme. Answer in at most three sentences, name the exact menu path, "
    "and never ask for a password. The customer is on the {segment} plan."
)
# what a user says next after an answer that helped: about the same thing ({slot} is the earlier turn's)
CHAT_FOLLOWUPS = (
    "Thanks. Does that also hold for {slot}?",
    "OK, done. And if that does not fix it for {slot}, what then?",
    "How long does that usually take for {slot}?",
)
CHAT_LOOKUP = "Let me look that up."
CHAT_TOOL_RESULT = '{{"lookup": "{topic}", "item": "{slot}", "status": "found"}}'
GENERIC_BAD = _GENERIC_BAD
SEGMENTS = ("free", "pro", "enterprise")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR")
