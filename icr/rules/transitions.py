"""State transitions: how a certificate's review moves on.

Every function takes the certificate's state and `now` (and the message at hand) and returns
a decision: a new state with the effects to carry out, or a time to wait until. No Temporal,
no I/O, no clock: the workflow asks, runs the effects as activities and waits. The input
is never changed: each transition works on a deep copy.
The numbers and their sources are in ../shared/spec/icr-rules.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from icr.models import (
    ENGINE_ACTOR,
    EXERCISE_ACTOR,
    RESPONSE_LABELS,
    ActivityEvent,
    ActivityKind,
    AuditRefusal,
    CertificateSnapshot,
    CertificateState,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseCertificateRequest,
    CloseNotification,
    CloseTask,
    Decision,
    Effect,
    FollowUpWatch,
    HistoryEntry,
    LaaDecisionRequest,
    LedgerEvent,
    MarkNotificationOverdue,
    NotificationStatus,
    OpenNotification,
    OpenTask,
    RaiseNotification,
    RaiseTask,
    ReassignContactRequest,
    RecordResponse,
    RespondRequest,
    Response,
    TaskKind,
    UpdateContact,
)
from icr.rules.checks import (
    EVENT_ID_MAX_CHARS,
    LOGIN_MAX_CHARS,
    SOURCE_MAX_CHARS,
    Refused,
    check_decision,
    check_event,
    check_response,
    printable,
)
from icr.rules.dates import financial_year_end_after, inactivity_deadline, start_of_day_uk
from icr.rules.letters import NOTIFICATION_SUBJECT, notification_letter
from icr.rules.views import stage_of

HISTORY_KEPT = 25
BILLED_RESPONSES = frozenset(
    {
        Response.COMPLETE_TO_BE_BILLED,
        Response.COMPLETE_COSTS_NEGOTIATED,
        Response.COMPLETE_COURT_ASSESSMENT,
    }
)


@dataclass
class Transition:
    """The certificate's new state, and the effects to carry out (in order) to get there."""

    state: CertificateState
    effects: list[Effect] = field(default_factory=list)


@dataclass
class Reload:
    """A new policy version takes effect now: read the registry again."""


@dataclass
class Wait:
    """Nothing to do until `until` (or a message); None means only a message can help."""

    until: datetime | None


def initial_state(case_reference: str) -> CertificateState:
    """A review starts with nothing known but the case reference, until the registry is read."""
    return CertificateState(case_reference=case_reference)




def _note(state: CertificateState, at: datetime, what: str) -> None:
    state.history.append(HistoryEntry(at=at, what=what))
    del state.history[:-HISTORY_KEPT]


def _settle(t: Transition) -> Transition:
    t.state.stage = stage_of(t.state)
    return t


def load(state: CertificateState, snapshot: CertificateSnapshot, now: datetime) -> Transition:
    """The registry is taken in: policy, registration, newer activity (as good as an event), a closure."""
    # On start, and whenever the registry tells us it changed.
    s = state.model_copy(deep=True)
    first = not s.loaded
    s.loaded = True
    s.registration = snapshot.registration
    if snapshot.policy != s.policy:
        if s.policy is not None:
            _note(s, now, f"policy version {snapshot.policy.version} in force "
                          f"({snapshot.policy.inactivity_days} days)")
        s.policy = snapshot.policy
    s.next_policy_change_at = snapshot.next_policy_change_at
    if snapshot.exercise_response is not None and not s.on_exercise_list:
        s.exercise_response = snapshot.exercise_response
    if snapshot.last_activity_at is not None and (
        s.last_activity_at is None or snapshot.last_activity_at > s.last_activity_at
    ):
        s.last_activity_at = snapshot.last_activity_at
    anchor = s.last_activity_at
    if anchor is None and s.registration is not None:
        anchor = start_of_day_uk(s.registration.granted_on)
    effects: list[Effect] = []
    if anchor is not None and (s.clock_from is None or anchor > s.clock_from):
        s.clock_from = anchor
        if not first:  # the registry reports newer activity: as good as an event
            s.notification_cycle = 0
            if s.notification is not None:
                effects.append(_close_notification(s, NotificationStatus.ACTIVITY_RECORDED, now))
            effects.extend(_supersede_no_response_task(s, now, "activity recorded"))
    if first:
        _note(s, now, "review started" if s.registration else "review started (not registered)")
    if snapshot.closed and s.closed_at is None:
        # Closed elsewhere before this run knew: nothing reopens a certificate.
        s.closed_at = now
        s.closed_reason = "already closed in the registry"
        s.notification = None
        s.task = None
    return _settle(Transition(s, effects))


def _digest(event: ActivityEvent) -> str:
    return hashlib.sha256(event.model_dump_json().encode()).hexdigest()[:32]


def screen_events(
    state: CertificateState, events: list[ActivityEvent], now: datetime
) -> tuple[list[ActivityEvent], list[AuditRefusal]]:
    """Events that are not trustworthy qualifying activity are refused and audited; the rest are recorded."""
    accepted: list[ActivityEvent] = []
    refusals: list[AuditRefusal] = []
    for event in events:
        try:
            check_event(event, now)
        except Refused as refused:
            refusals.append(
                AuditRefusal(
                    case_reference=state.case_reference,
                    # The whole event in the key: a repeat of the same refused event audits
                    # once, two different ones (even with the same or no id) twice.
                    refusal_key=f"{state.case_reference}-event-{printable(event.event_id, 50)}-refused-{_digest(event)}",
                    actor=printable(event.source or "", SOURCE_MAX_CHARS) or "activity source",
                    action="activity_refused",
                    reason=refused.message,
                    detail={"event_id": printable(event.event_id, EVENT_ID_MAX_CHARS),
                            "kind": printable(event.kind, 100)},
                    at=now,
                )
            )
        else:
            accepted.append(event)
    return accepted, refusals


def apply_ledger_events(state: CertificateState, rows: list[LedgerEvent], now: datetime) -> Transition:
    """Every ledger row newer than the last one applied is applied once, whoever wrote it."""
    # The ledger returns its rows for every event of a step, also those an attempt that never
    # completed wrote (they were never applied) and duplicates of events applied long ago
    # (at or below the watermark). The watermark tells them apart.
    fresh = [r for r in rows if r.seq > state.ledger_applied]
    if not fresh:
        return Transition(state.model_copy(deep=True))
    transition = apply_events(state, [ActivityEvent(event_id=r.event_id, kind=r.kind, occurred_at=r.occurred_at)
                                      for r in fresh], now)
    transition.state.ledger_applied = max(r.seq for r in fresh)
    return transition


def refuse_message(state: CertificateState, *, action: str, actor: str, reason: str,
                   detail: dict[str, str], now: datetime) -> Transition:
    """A message refused after it was accepted for processing (a close with a bad reason, a
    queue already full, a value the database would not store): audited once under its own
    key, then dropped. Nothing else changes."""
    s = state.model_copy(deep=True)
    s.refusals += 1
    _note(s, now, f"{action}: {printable(reason, 200)}")
    return Transition(s, [AuditRefusal(
        case_reference=s.case_reference, refusal_key=f"{s.case_reference}-{action}-{s.refusals}",
        actor=printable(actor, LOGIN_MAX_CHARS) or "unknown", action=action, reason=printable(reason, 500),
        detail={k: printable(v, 200) for k, v in detail.items()}, at=now)])


def apply_events(state: CertificateState, events: list[ActivityEvent], now: datetime) -> Transition:
    """Activity newer than the last restarts the clock and closes an open notification; a bill ends a follow-up."""
    # Only newly recorded events get here: the ledger has already removed duplicates.
    s = state.model_copy(deep=True)
    effects: list[Effect] = []
    moved = False
    # Only screened events get here (check_event), so every one has its time.
    timed = sorted(((e.occurred_at, e) for e in events if e.occurred_at is not None), key=lambda p: p[0])
    for at, event in timed:
        if s.last_activity_at is None or at > s.last_activity_at:
            s.last_activity_at = at
        if event.kind == ActivityKind.BILL and s.follow_up is not None:
            s.follow_up = None
            _note(s, now, "bill received: no follow-up needed")
        if s.clock_from is None or at > s.clock_from:
            s.clock_from = at
            moved = True
            _note(s, now, f"activity {event.kind} at {at.isoformat()}: clock restarts")
        else:
            _note(s, now, f"activity {event.kind} at {at.isoformat()} recorded; "
                          "older than the latest, moves no deadline")
    if moved:
        s.notification_cycle = 0
        if s.notification is not None:
            effects.append(_close_notification(s, NotificationStatus.ACTIVITY_RECORDED, now))
        effects.extend(_supersede_no_response_task(s, now, "activity recorded"))
    return _settle(Transition(s, effects))


def next_step(state: CertificateState, now: datetime) -> Transition | Reload | Wait:
    """In time a certificate falls due, its notification goes overdue and returns, a follow-up falls due."""
    # What the passage of time asks for now, or when to look again.
    s = state
    if s.closed_at is not None or s.policy is None:
        return Wait(None)
    if s.next_policy_change_at is not None and now >= s.next_policy_change_at:
        return Reload()
    wakes: list[datetime] = []
    if s.next_policy_change_at is not None:
        wakes.append(s.next_policy_change_at)

    n = s.notification
    if n is not None:
        if now >= n.return_date:
            return _return_notification(s, now)
        if not n.overdue and now >= n.due_date:
            s2 = s.model_copy(deep=True)
            assert s2.notification is not None
            s2.notification.overdue = True
            _note(s2, now, f"notification {n.notification_id} overdue")
            return _settle(Transition(s2, [MarkNotificationOverdue(
                case_reference=s.case_reference, notification_id=n.notification_id, at=now)]))
        wakes.append(n.return_date if n.overdue else n.due_date)

    blocked = s.task is not None and s.task.blocking
    if s.follow_up is not None:
        if now >= s.follow_up.due_at and not blocked:
            s2 = s.model_copy(deep=True)
            response = s.follow_up.response
            s2.follow_up = None
            effects = list(_supersede_no_response_task(s2, now, "follow-up raised"))
            effects.append(_raise_task(s2, TaskKind.FOLLOW_UP, now, response=response,
                                       detail=f"{RESPONSE_LABELS[response]} kept open, and no bill "
                                              "by the end of the financial year"))
            return _settle(Transition(s2, effects))
        if not blocked:
            wakes.append(s.follow_up.due_at)

    deadline = inactivity_deadline(s)  # None until a registration or an event starts the clock
    if n is None and not blocked and deadline is not None:
        if now >= deadline:
            return _fall_due(s, now)
        wakes.append(deadline)
    return Wait(min(wakes) if wakes else None)


def _fall_due(state: CertificateState, now: datetime) -> Transition:
    s = state.model_copy(deep=True)
    if s.registration is None:
        _note(s, now, "due, but the certificate is not registered: LAA task raised")
        effects: list[Effect] = [_raise_task(s, TaskKind.REGISTRATION_MISSING, now,
                                             detail="certificate fell due for review but is not in the registry; "
                                                    "no provider contact to notify")]
        return _settle(Transition(s, effects))
    if s.exercise_response is not None and not s.on_exercise_list:
        exercise = s.exercise_response
        s.on_exercise_list = True
        s.exercise_response = None
        key = f"{s.case_reference}-exercise"
        _note(s, now, f"exercise response applied: {RESPONSE_LABELS[exercise.response]} "
                      f"(reported {exercise.reported_on.isoformat()})")
        effects = [
            ClaimExerciseResponse(case_reference=s.case_reference, claim_key=key, at=now),
            RecordResponse(case_reference=s.case_reference, response_key=key, notification_id=None,
                           response=exercise.response, message=None,
                           responded_by=EXERCISE_ACTOR, at=now),
        ]
        effects.extend(_answer(s, exercise.response, now, actor=EXERCISE_ACTOR))
        return _settle(Transition(s, effects))
    return _settle(Transition(s, [_raise_notification(s, now)]))


def _raise_notification(s: CertificateState, now: datetime) -> RaiseNotification:
    """Mutates `s`: opens the next notification of the current review."""
    assert s.policy is not None and s.registration is not None
    s.notifications_raised += 1
    s.notification_cycle += 1
    notification = OpenNotification(
        notification_id=f"ICR-{s.case_reference}-{s.notifications_raised:03d}",
        cycle=s.notification_cycle,
        assigned_to=s.registration.provider_contact_login,
        date_assigned=now,
        due_date=now + s.policy.response_due,
        return_date=now + s.policy.return_after,
    )
    s.notification = notification
    _note(s, now, f"notification {notification.notification_id} raised "
                  f"(cycle {notification.cycle}) to {notification.assigned_to}")
    return RaiseNotification(
        case_reference=s.case_reference,
        notification_id=notification.notification_id,
        cycle=notification.cycle,
        provider_firm_id=s.registration.provider_firm_id,
        assigned_to=notification.assigned_to,
        date_assigned=notification.date_assigned,
        due_date=notification.due_date,
        return_date=notification.return_date,
        subject=NOTIFICATION_SUBJECT,
        letter=notification_letter(s.case_reference, notification.due_date),
    )


def _return_notification(state: CertificateState, now: datetime) -> Transition:
    """21 days with no response: close as no response, task to the LAA, resend or stop."""
    s = state.model_copy(deep=True)
    assert s.notification is not None and s.policy is not None
    returned = s.notification
    effects: list[Effect] = [_close_notification(s, NotificationStatus.NO_RESPONSE, now)]
    effects.extend(_supersede_no_response_task(s, now, "a later cycle was returned"))
    if s.notification_cycle >= s.policy.max_unanswered_cycles:
        _note(s, now, f"{s.notification_cycle} cycles unanswered: escalated")
        effects.append(_raise_task(s, TaskKind.ESCALATION, now,
                                   notification_id=returned.notification_id,
                                   detail=f"{s.notification_cycle} consecutive notifications "
                                          "unanswered: contract manager intervention"))
    elif s.on_exercise_list:
        effects.append(_raise_task(s, TaskKind.NO_RESPONSE, now,
                                   notification_id=returned.notification_id,
                                   detail="no response in 21 days; exercise certificate, not resent"))
    else:
        effects.append(_raise_task(s, TaskKind.NO_RESPONSE, now, blocking=False,
                                   notification_id=returned.notification_id,
                                   detail="no response in 21 days; notification resent"))
        effects.append(_raise_notification(s, now))
    return _settle(Transition(s, effects))


def _close_notification(s: CertificateState, status: NotificationStatus, now: datetime) -> CloseNotification:
    assert s.notification is not None
    closed = s.notification
    s.notification = None
    _note(s, now, f"notification {closed.notification_id} closed: {status.value}")
    return CloseNotification(case_reference=s.case_reference, notification_id=closed.notification_id,
                             status=status, at=now)


def _raise_task(s: CertificateState, kind: TaskKind, now: datetime, *, detail: str,
                blocking: bool = True, notification_id: str | None = None,
                response: Response | None = None) -> RaiseTask:
    s.tasks_raised += 1
    task_id = f"TASK-{s.case_reference}-{s.tasks_raised:03d}"
    s.task = OpenTask(task_id=task_id, kind=kind, raised_at=now, response=response, blocking=blocking)
    _note(s, now, f"LAA task {task_id} raised: {kind.value}")
    return RaiseTask(case_reference=s.case_reference, task_id=task_id, task_kind=kind,
                     notification_id=notification_id, response=response, detail=detail, at=now)


def _supersede_no_response_task(s: CertificateState, now: datetime, why: str) -> list[Effect]:
    if s.task is None or s.task.blocking or s.task.kind != TaskKind.NO_RESPONSE:
        return []
    task = s.task
    s.task = None
    return [CloseTask(case_reference=s.case_reference, task_id=task.task_id, decision=None,
                      decided_by=ENGINE_ACTOR, reason=f"superseded: {why}", at=now)]


def _restart_clock(s: CertificateState, now: datetime) -> None:
    s.clock_from = now
    s.notification_cycle = 0


def _answer(s: CertificateState, response: Response, now: datetime, *, actor: str,
            notification_id: str | None = None) -> list[Effect]:
    """Where a response leads (the provider's, or an exercise response). Mutates `s`."""
    if response == Response.CASE_ONGOING:
        s.last_activity_at = now
        _restart_clock(s, now)
        _note(s, now, "Case Ongoing: clock restarts")
        return []
    if response in BILLED_RESPONSES:
        return [_raise_task(s, TaskKind.REVIEW, now, response=response, notification_id=notification_id,
                            detail=f"provider answered {RESPONSE_LABELS[response]}: close or keep open")]
    assert response == Response.COMPLETE_NO_BILL_DUE
    return [_close_certificate(s, now, reason="Case Complete No Bill Due", actor=actor, recoup=True)]


def _close_certificate(s: CertificateState, now: datetime, *, reason: str, actor: str,
                       recoup: bool) -> CloseCertificate:
    s.closed_at = now
    s.closed_reason = reason
    s.follow_up = None
    _note(s, now, f"certificate closed: {reason}")
    return CloseCertificate(case_reference=s.case_reference, recoupment_id=f"RCP-{s.case_reference}",
                            recoup=recoup, reason=reason, actor=actor, at=now)


def apply_response(state: CertificateState, request: RespondRequest, now: datetime) -> Transition:
    """Case Ongoing restarts the clock, a billed response goes to LAA review, No Bill Due closes and recoups."""
    # The provider's answer, already checked and authorized.
    response = check_response(state, request)
    s = state.model_copy(deep=True)
    assert s.notification is not None
    notification_id = s.notification.notification_id
    effects: list[Effect] = [
        RecordResponse(case_reference=s.case_reference, response_key=notification_id,
                       notification_id=notification_id, response=response, message=request.message,
                       responded_by=request.user_login_id, at=now)
    ]
    s.notification = None
    _note(s, now, f"{request.user_login_id} answered {RESPONSE_LABELS[response]} "
                  f"to {notification_id}")
    effects.extend(_supersede_no_response_task(s, now, "provider responded"))
    effects.extend(_answer(s, response, now, actor=request.user_login_id,
                           notification_id=notification_id))
    return _settle(Transition(s, effects))


def response_outcome(response: Response) -> str:
    """The responder is told, in words, where their response leads."""
    if response == Response.CASE_ONGOING:
        return "clock restarted"
    if response in BILLED_RESPONSES:
        return "LAA review task raised"
    return "certificate closed; outstanding payments on account recouped"


def apply_decision(state: CertificateState, request: LaaDecisionRequest, now: datetime) -> Transition:
    """Close closes and recoups; keep open restarts the clock, with a year-end follow-up for billed responses."""
    decision = check_decision(state, request)
    s = state.model_copy(deep=True)
    assert s.task is not None
    task = s.task
    s.task = None
    effects: list[Effect] = [
        CloseTask(case_reference=s.case_reference, task_id=task.task_id, decision=decision,
                  decided_by=request.caseworker, reason=request.reason, at=now)
    ]
    _note(s, now, f"{request.caseworker} decided {decision.value} on {task.task_id}")
    if decision == Decision.CLOSE:
        if s.notification is not None:
            effects.append(_close_notification(s, NotificationStatus.CERTIFICATE_CLOSED, now))
        effects.append(_close_certificate(s, now, reason=f"LAA decision: {request.reason or 'close'}",
                                          actor=request.caseworker, recoup=True))
        return _settle(Transition(s, effects))
    if s.notification is not None:
        effects.append(_close_notification(s, NotificationStatus.WITHDRAWN, now))
    _restart_clock(s, now)
    if task.kind == TaskKind.REVIEW and task.response in BILLED_RESPONSES:
        s.follow_up = FollowUpWatch(response=task.response, due_at=financial_year_end_after(task.raised_at))
        _note(s, now, f"kept open: follow-up due {s.follow_up.due_at.isoformat()} unless a bill arrives")
    return _settle(Transition(s, effects))


def refuse_decision(state: CertificateState, request: LaaDecisionRequest, refused: Refused,
                    now: datetime) -> Transition:
    """A refused decision changes nothing but is audited, each refusal under its own key."""
    s = state.model_copy(deep=True)
    s.refusals += 1
    _note(s, now, f"decision by {printable(request.caseworker, LOGIN_MAX_CHARS)!r} refused: {refused.message}")
    return Transition(s, [AuditRefusal(
        case_reference=s.case_reference, refusal_key=f"{s.case_reference}-decision-{s.refusals}-refused",
        actor=printable(request.caseworker, LOGIN_MAX_CHARS) or "unknown", action="decision_refused",
        reason=refused.message, detail={"decision": printable(request.decision, 100)}, at=now)])


def apply_close(state: CertificateState, request: CloseCertificateRequest, now: datetime) -> Transition:
    """A certificate closed elsewhere closes its open notification and task, and recoups nothing."""
    s = state.model_copy(deep=True)
    if s.closed_at is not None:
        return Transition(s)
    effects: list[Effect] = []
    if s.notification is not None:
        effects.append(_close_notification(s, NotificationStatus.CERTIFICATE_CLOSED, now))
    if s.task is not None:
        task = s.task
        s.task = None
        effects.append(CloseTask(case_reference=s.case_reference, task_id=task.task_id, decision=None,
                                 decided_by=ENGINE_ACTOR, reason=f"certificate closed: {request.reason}",
                                 at=now))
    effects.append(_close_certificate(s, now, reason=f"closed elsewhere: {request.reason}",
                                      actor="close_certificate", recoup=False))
    return _settle(Transition(s, effects))


def apply_reassign(state: CertificateState, request: ReassignContactRequest, now: datetime) -> Transition:
    """Later notifications go to the new provider contact; the open one stays with its assignee."""
    s = state.model_copy(deep=True)
    assert s.registration is not None
    old = s.registration.provider_contact_login
    s.registration.provider_contact_login = request.new_contact_login_id
    _note(s, now, f"{request.user_login_id} reassigned the provider contact from {old} "
                  f"to {request.new_contact_login_id}")
    return Transition(s, [UpdateContact(case_reference=s.case_reference,
                                        new_contact_login_id=request.new_contact_login_id,
                                        actor=request.user_login_id, at=now)])
