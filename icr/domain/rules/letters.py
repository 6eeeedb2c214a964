"""What the provider reads: the subject and the letter of an ICR notification."""

from __future__ import annotations

from datetime import datetime, timedelta

from icr.domain.models import RESPONSE_LABELS
from icr.domain.rules.dates import UK

NOTIFICATION_SUBJECT = "Inactive Case Please Review"


def period_in_words(period: timedelta) -> str:
    """A policy period as people say it: whole days in days ("14 days"), anything else in hours, minutes or seconds."""
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds} second" if seconds == 1 else f"{seconds} seconds"


def notification_letter(case_reference: str, due_date: datetime, *, response_due: timedelta,
                        return_after: timedelta) -> str:
    """The letter asks for one of the five responses by the due date (UK time), stating the
    response periods of the policy in force."""
    due = due_date.astimezone(UK).strftime("%d %B %Y")
    choices = "\n".join(f"  - {label}" for label in RESPONSE_LABELS.values())
    return (
        f"Certificate {case_reference} has had no recorded activity for the period set by the "
        "Legal Aid Agency's inactive case review policy.\n"
        f"Please tell us within {period_in_words(response_due)}, by {due}, whether the case is "
        f"still going on or has finished, by choosing one of these responses:\n{choices}\n"
        f"If we do not hear from you within {period_in_words(return_after)} the case will be passed "
        "to an LAA caseworker, who may close the certificate and recoup any payments on account."
    )
