"""The Inactive Case Review rules, pure: state and `now` in, a decision out.

No Temporal, no I/O, no clock: only `icr.models` and the standard library. Split by concern:

- `checks`: input checks and authorisation (`Refused` and the `check_*` / `authorize_*` rules);
- `dates`: UK dates, the inactivity deadline, the financial year, outages, policy wake-ups;
- `transitions`: how a review moves on (`load`, `next_step`, `apply_*`), as `Transition`s;
- `views`: the stage, status and search attributes the outside sees;
- `letters`: the notification's subject and letter;
- `forecast`: when open certificates fall due under the policy versions and outages.

Every name callers use is re-exported here: import from `icr.rules`, not from the modules.
The numbers and their sources are in ../shared/spec/icr-rules.md.
"""

from icr.models import ActivityKind, Response
from icr.rules.checks import (
    CASE_REFERENCE,
    EVENT_ID_MAX_CHARS,
    FUTURE_TOLERANCE,
    MESSAGE_MAX_CHARS,
    POLICY_BACKDATING,
    RESPONDING_ROLES,
    Refused,
    authorize_reassign,
    authorize_decision,
    authorize_response,
    can_respond,
    check_case_reference,
    check_close,
    check_decision,
    check_event,
    check_outage,
    check_policy_change,
    check_reassign,
    check_response,
    workflow_id_for,
)
from icr.rules.dates import (
    POLICY_SPREAD,
    UK,
    extended_deadline,
    financial_year_end_after,
    inactivity_deadline,
    outage_end,
    outage_extensions,
    policy_wake_at,
    start_of_day_uk,
)
from icr.rules.forecast import Bucket, Forecast, PolicySpan, falls_due_at, forecast, policy_at, policy_spans
from icr.rules.letters import NOTIFICATION_SUBJECT, notification_letter, period_in_words
from icr.rules.transitions import (
    BILLED_RESPONSES,
    HISTORY_KEPT,
    Reload,
    Transition,
    Wait,
    apply_close,
    apply_decision,
    apply_events,
    apply_reassign,
    apply_response,
    initial_state,
    load,
    next_step,
    refuse_close,
    refuse_decision,
    response_outcome,
    screen_events,
)
from icr.rules.views import (
    current_details,
    search_attributes,
    stage_of,
    static_details,
    static_summary,
    status_of,
    step_summary,
    task_asks,
    uk_time,
    wait_summary,
)

__all__ = [
    # vocabulary used as rules.ActivityKind / rules.Response (starter.py)
    "ActivityKind",
    "Response",
    # checks
    "CASE_REFERENCE",
    "EVENT_ID_MAX_CHARS",
    "FUTURE_TOLERANCE",
    "MESSAGE_MAX_CHARS",
    "RESPONDING_ROLES",
    "Refused",
    "authorize_reassign",
    "authorize_decision",
    "authorize_response",
    "can_respond",
    "check_case_reference",
    "check_close",
    "check_decision",
    "check_event",
    "check_reassign",
    "check_response",
    "workflow_id_for",
    "POLICY_BACKDATING",
    "check_outage",
    "check_policy_change",
    # dates
    "UK",
    "financial_year_end_after",
    "inactivity_deadline",
    "start_of_day_uk",
    "POLICY_SPREAD",
    "extended_deadline",
    "outage_end",
    "outage_extensions",
    "policy_wake_at",
    # forecast
    "Bucket",
    "Forecast",
    "PolicySpan",
    "falls_due_at",
    "forecast",
    "policy_at",
    "policy_spans",
    # letters
    "NOTIFICATION_SUBJECT",
    "notification_letter",
    "period_in_words",
    # transitions
    "BILLED_RESPONSES",
    "HISTORY_KEPT",
    "Reload",
    "Transition",
    "Wait",
    "apply_close",
    "apply_decision",
    "apply_events",
    "apply_reassign",
    "apply_response",
    "initial_state",
    "load",
    "next_step",
    "refuse_close",
    "refuse_decision",
    "response_outcome",
    "screen_events",
    # views
    "current_details",
    "search_attributes",
    "stage_of",
    "static_details",
    "static_summary",
    "status_of",
    "step_summary",
    "task_asks",
    "uk_time",
    "wait_summary",
]
