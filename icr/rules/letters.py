"""What the provider reads: the subject and the letter of an ICR notification."""

from __future__ import annotations

from datetime import datetime

from icr.models import RESPONSE_LABELS
from icr.rules.dates import UK

NOTIFICATION_SUBJECT = "Inactive Case Please Review"


def notification_letter(case_reference: str, due_date: datetime) -> str:
    """The letter asks the provider to choose one of the five responses by the due date (UK time)."""
    due = due_date.astimezone(UK).strftime("%d %B %Y")
    choices = "\n".join(f"  - {label}" for label in RESPONSE_LABELS.values())
    return (
        f"Certificate {case_reference} has had no recorded activity for the period set by the "
        "Legal Aid Agency's inactive case review policy.\n"
        f"Please tell us by {due} whether the case is still going on or has finished, by "
        f"choosing one of these responses:\n{choices}\n"
        "If we do not hear from you within 21 days the case will be passed to an LAA caseworker, "
        "who may close the certificate and recoup any payments on account."
    )
