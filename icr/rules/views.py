"""What the outside sees of a certificate: its stage, its status and its search attributes.

Views read the state and change nothing.
"""

from __future__ import annotations

from icr.models import (
    CertificateState,
    CertificateStatus,
    IcrStage,
    NotificationView,
    RecoupmentView,
    TaskKind,
    TaskView,
)
from icr.rules.dates import inactivity_deadline


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
            overdue=n.overdue),
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
    }
