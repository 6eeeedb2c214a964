"""What the outside sees of a certificate: its stage, its status, its search attributes, and
what the Temporal Web UI shows a caseworker (summary, current details, step and wait summaries).

Views read the state and change nothing. Nothing shown in the Web UI names a person: no
login ids, no messages, no free-text reasons (those stay in the `status` query and the database).
"""

from __future__ import annotations

from datetime import datetime

from icr.domain.models import (
    EXERCISE_ACTOR,
    RESPONSE_LABELS,
    AuditRefusal,
    CertificateState,
    CertificateStatus,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseNotification,
    CloseTask,
    Effect,
    IcrStage,
    MarkNotificationOverdue,
    NotificationView,
    OpenTask,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    RecordResponse,
    RecoupmentView,
    TaskKind,
    TaskView,
    UpdateContact,
)
from icr.domain.rules.dates import UK, inactivity_deadline

DETAILS_EVENTS = 5
STAGE_HEADLINES = {
    IcrStage.ACTIVE: "Active: the inactivity clock is running",
    IcrStage.AWAITING_RESPONSE: "Awaiting the provider's response",
    IcrStage.OVERDUE: "Overdue: the provider's response is late",
    IcrStage.LAA_REVIEW: "LAA review: a task awaits a caseworker's decision",
    IcrStage.ESCALATED: "Escalated: a task awaits a caseworker's decision",
    IcrStage.CLOSED: "Closed",
}


def stage_of(state: CertificateState) -> IcrStage:
    """A certificate is closed, with the LAA (review or escalation), awaiting a response, overdue, or active."""
    if state.closed_at is not None:
        return IcrStage.CLOSED
    if state.task is not None and state.task.blocking:
        return IcrStage.ESCALATED if state.task.kind == TaskKind.ESCALATION else IcrStage.LAA_REVIEW
    if state.notification is not None:
        return IcrStage.OVERDUE if state.notification.overdue else IcrStage.AWAITING_RESPONSE
    return IcrStage.ACTIVE


def status_of(state: CertificateState) -> CertificateStatus:
    """Anyone asking sees the stage, deadline, open notification or task, recoupments and history."""
    n = state.notification
    return CertificateStatus(
        case_reference=state.case_reference,
        stage=state.stage,
        registered=state.registration is not None,
        provider_firm_id=state.registration.provider_firm_id if state.registration else None,
        provider_contact_login=state.registration.provider_contact_login if state.registration else None,
        last_activity_at=state.last_activity_at,
        inactivity_deadline=None if state.closed_at else inactivity_deadline(state),
        notification_cycle=state.notification_cycle,
        policy_version=state.policy.version if state.policy else None,
        open_notification=None if n is None else NotificationView(
            notification_id=n.notification_id, assigned_to=n.assigned_to,
            date_assigned=n.date_assigned, due_date=n.due_date, return_date=n.return_date,
            overdue=n.overdue, extensions=list(n.extensions)),
        open_task=None if state.task is None else TaskView(task_id=state.task.task_id, kind=state.task.kind),
        follow_up_due_at=state.follow_up.due_at if state.follow_up else None,
        on_exercise_list=state.on_exercise_list,
        recoupments=[RecoupmentView(amount=r.amount, at=r.at) for r in state.recoupments],
        history=list(state.history),
        closed_at=state.closed_at,
        closed_reason=state.closed_reason,
        notifications_raised=state.notifications_raised,
        tasks_raised=state.tasks_raised,
    )


def search_attributes(state: CertificateState) -> dict[str, object]:
    """Certificates are listed by stage, firm, deadline, due date, cycle and policy; no personal data."""
    # For the Web UI's list filters; None means absent.
    deadline = None if state.closed_at else inactivity_deadline(state)
    return {
        "IcrStage": state.stage.value,
        "CaseReference": state.case_reference,
        "ProviderFirmId": state.registration.provider_firm_id if state.registration else None,
        "InactivityDeadline": deadline,
        "ResponseDueDate": state.notification.due_date if state.notification else None,
        "NotificationCycle": state.notification_cycle,
        "PolicyVersion": state.policy.version if state.policy else None,
        "OpenTaskKind": state.task.kind.value if state.task and not state.closed_at else None,
    }


# --- the Temporal Web UI -----------------------------------------------------------------


def uk_time(at: datetime) -> str:
    """A time as people read it here: UK wall-clock time, to the minute."""
    return at.astimezone(UK).strftime("%Y-%m-%d %H:%M")


def static_summary(case_reference: str, provider_firm_id: str | None) -> str:
    """The one line the Web UI shows for a certificate's workflow from its start; the firm when
    known (a review started by an activity source alone knows none)."""
    return f"Certificate {case_reference}" + (f" · firm {provider_firm_id}" if provider_firm_id else "")


def static_details(case_reference: str, provider_firm_id: str | None) -> str:
    """What the certificate is, set once at start; its situation now is in the current details."""
    firm = f", provider firm **{provider_firm_id}**" if provider_firm_id else ""
    return (f"Civil legal aid certificate **{case_reference}**{firm}, under inactive case review.\n\n"
            "Its situation now is under *Current Details*; the whole state, with its history, "
            "under *Queries* → `status`.")


def task_asks(state: CertificateState, task: OpenTask) -> str:
    """What an open LAA task asks of a caseworker, in words."""
    label = RESPONSE_LABELS[task.response] if task.response else None
    if task.kind == TaskKind.REVIEW:
        return f"the provider answered {label or 'that the case is complete'}: close, or keep open"
    if task.kind == TaskKind.NO_RESPONSE:
        if not task.blocking:
            return "no response by the return date; the notification was sent again (a decision is optional)"
        return "no response by the return date; an exercise certificate, not sent again: close, or keep open"
    if task.kind == TaskKind.ESCALATION:
        return (f"{state.notification_cycle} notifications in a row unanswered: contract manager "
                "intervention; close, or keep open")
    if task.kind == TaskKind.FOLLOW_UP:
        return f"{label or 'a to-be-billed response'} kept open, and no bill by the end of the financial " \
               "year: close, or keep open"
    return "fell due for review but is not in the registry: import it, or close, or keep open"


def current_details(state: CertificateState) -> str:
    """The certificate's situation now, as Markdown for the Web UI's Current Details."""
    lines = [f"**{STAGE_HEADLINES[state.stage]}**", ""]
    firm = state.registration.provider_firm_id if state.registration else None
    lines.append(f"- **Case reference** {state.case_reference} · **firm** {firm or 'not registered'}")
    if state.closed_at is not None:
        lines.append(f"- **Closed** {uk_time(state.closed_at)}")
        for r in state.recoupments:
            lines.append(f"- **Recouped** £{r.amount} on {uk_time(r.at)}")
    else:
        deadline = inactivity_deadline(state)
        if deadline is not None and (state.notification is not None or state.task is not None):
            lines.append(f"- **Inactivity deadline** {uk_time(deadline)} (reached: under review)")
        elif deadline is not None:
            lines.append(f"- **Falls due** {uk_time(deadline)} unless activity is recorded before then")
        n = state.notification
        if n is not None:
            limit = state.policy.max_unanswered_cycles if state.policy else None
            cycle = f"cycle {n.cycle}" + (f" of {limit}" if limit else "")
            late = " — **overdue**" if n.overdue else ""
            lines.append(f"- **Open notification** {n.notification_id} ({cycle}): due {uk_time(n.due_date)}, "
                         f"returned {uk_time(n.return_date)} if unanswered{late}")
        t = state.task
        if t is not None:
            lines.append(f"- **Open task** {t.task_id} ({t.kind.value}, since {uk_time(t.raised_at)}): "
                         f"{task_asks(state, t)}")
        if state.follow_up is not None:
            lines.append(f"- **Follow-up** due {uk_time(state.follow_up.due_at)} unless a bill arrives")
        if state.poa_outstanding is not None:
            lines.append(f"- **Payments on account outstanding** £{state.poa_outstanding}")
        if state.on_exercise_list:
            lines.append("- **On the exercise list** (January 2024): never sent again")
    events = state.history[-DETAILS_EVENTS:]
    if events:
        lines += ["", "**Last events**", ""]
        lines += [f"- {uk_time(e.at)} {e.public or e.what}" for e in reversed(events)]
    t = state.task
    if t is not None and state.closed_at is None:
        lines += ["", "To decide: *More Actions* → *Send an Update* → `decide`, with "
                      f'`{{"caseworker": "YOUR-ID", "decision": "keep_open", "reason": "...", '
                      f'"task_id": "{t.task_id}"}}` (or `"close"`).']
    lines += ["", "*Times are UK time.*"]
    return "\n".join(lines)


def step_summary(effect: Effect) -> str:
    """What one step of the workflow does, as its activity's summary in the Web UI's timeline."""
    if isinstance(effect, RecordActivityEvents):
        return f"record {len(effect.events)} activity event(s)"
    if isinstance(effect, RaiseNotification):
        return (f"raise notification {effect.notification_id} (cycle {effect.cycle}): "
                f"due {uk_time(effect.due_date)}")
    if isinstance(effect, MarkNotificationOverdue):
        return f"notification {effect.notification_id} overdue"
    if isinstance(effect, CloseNotification):
        return f"close notification {effect.notification_id}: {effect.status.value}"
    if isinstance(effect, RecordResponse):
        by = " (exercise response)" if effect.responded_by == EXERCISE_ACTOR else ""
        return f"record response {RESPONSE_LABELS[effect.response]}{by}"
    if isinstance(effect, RaiseTask):
        return f"raise LAA task {effect.task_id}: {effect.task_kind.value}"
    if isinstance(effect, CloseTask):
        return f"close LAA task {effect.task_id}: {effect.decision.value if effect.decision else 'by the engine'}"
    if isinstance(effect, ClaimExerciseResponse):
        return "apply the exercise response"
    if isinstance(effect, CloseCertificate):
        return "close the certificate" + ("; recoup payments on account" if effect.recoup else "")
    if isinstance(effect, UpdateContact):
        return "record the new provider contact"
    if isinstance(effect, AuditRefusal):
        return f"audit: {effect.action.replace('_', ' ')}"
    return str(effect.kind).replace("_", " ")


def wait_summary(state: CertificateState, until: datetime) -> str:
    """What the workflow waits for until `until`, as its timer's summary in the Web UI's timeline."""
    n = state.notification
    if n is not None and until == (n.return_date if n.overdue else n.due_date):
        return (f"wait for response: returned {uk_time(n.return_date)}" if n.overdue
                else f"wait for response: due {uk_time(n.due_date)}")
    if state.follow_up is not None and until == state.follow_up.due_at:
        return f"wait for a bill: follow-up {uk_time(until)}"
    if until == inactivity_deadline(state):
        return f"wait for activity: falls due {uk_time(until)}"
    if until == state.next_policy_change_at:
        return f"wait for the next policy version: {uk_time(until)}"
    return f"wait until {uk_time(until)}"
