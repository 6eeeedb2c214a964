"""The Inactive Case Review rules, pure: state and `now` in, a decision out.

No Temporal, no I/O, no clock: only `icr.models` and the standard library. Split by concern:

- `checks`: input checks and authorisation (`Refused` and the `check_*` / `authorize_*` rules);
- `dates`: UK dates, the inactivity deadline, the financial year;
- `transitions`: how a review moves on (`load`, `next_step`, `apply_*`), as `Transition`s;
- `views`: the stage, status and search attributes the outside sees;
- `letters`: the notification's subject and letter.

Every name callers use is re-exported here: import from `icr.rules`, not from the modules.
The numbers and their sources are in ../shared/spec/icr-rules.md.
"""

from icr.models import ActivityKind, Response
from icr.rules.checks import (
    CASE_REFERENCE,
    EARLIEST_YEAR,
    EVENT_ID_MAX_CHARS,
    FUTURE_TOLERANCE,
    LATEST_YEAR,
    LOGIN_MAX_CHARS,
    MESSAGE_MAX_CHARS,
    REASON_MAX_CHARS,
    RESPONDING_ROLES,
    SOURCE_MAX_CHARS,
    Refused,
    authorize_reassign,
    authorize_response,
    bound_close,
    bound_decision,
    bound_event,
    can_respond,
    check_case_reference,
    check_close,
    check_decision,
    check_event,
    check_reassign,
    check_response,
    check_text,
    check_time,
    printable,
    shown,
    workflow_id_for,
)
from icr.rules.dates import UK, financial_year_end_after, inactivity_deadline, start_of_day_uk
from icr.rules.letters import NOTIFICATION_SUBJECT, notification_letter
from icr.rules.transitions import (
    BILLED_RESPONSES,
    HISTORY_KEPT,
    Reload,
    Transition,
    Wait,
    apply_close,
    apply_decision,
    apply_events,
    apply_ledger_events,
    apply_reassign,
    apply_response,
    initial_state,
    load,
    next_step,
    refuse_decision,
    refuse_message,
    response_outcome,
    screen_events,
)
from icr.rules.views import search_attributes, stage_of, status_of

__all__ = [
    # vocabulary used as rules.ActivityKind / rules.Response (starter.py)
    "ActivityKind",
    "Response",
    # checks
    "CASE_REFERENCE",
    "EARLIEST_YEAR",
    "EVENT_ID_MAX_CHARS",
    "FUTURE_TOLERANCE",
    "LATEST_YEAR",
    "LOGIN_MAX_CHARS",
    "MESSAGE_MAX_CHARS",
    "REASON_MAX_CHARS",
    "RESPONDING_ROLES",
    "SOURCE_MAX_CHARS",
    "Refused",
    "authorize_reassign",
    "authorize_response",
    "bound_close",
    "bound_decision",
    "bound_event",
    "can_respond",
    "check_case_reference",
    "check_close",
    "check_decision",
    "check_event",
    "check_reassign",
    "check_response",
    "check_text",
    "check_time",
    "printable",
    "shown",
    "workflow_id_for",
    # dates
    "UK",
    "financial_year_end_after",
    "inactivity_deadline",
    "start_of_day_uk",
    # letters
    "NOTIFICATION_SUBJECT",
    "notification_letter",
    # transitions
    "BILLED_RESPONSES",
    "HISTORY_KEPT",
    "Reload",
    "Transition",
    "Wait",
    "apply_close",
    "apply_decision",
    "apply_events",
    "apply_ledger_events",
    "apply_reassign",
    "apply_response",
    "initial_state",
    "load",
    "next_step",
    "refuse_decision",
    "refuse_message",
    "response_outcome",
    "screen_events",
    # views
    "search_attributes",
    "stage_of",
    "status_of",
]
