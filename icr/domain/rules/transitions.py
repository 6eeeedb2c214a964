"""State transitions: how a certificate's review moves on.

Every function takes the certificate's state and `now` (and the message at hand) and returns
a decision: a new state with the effects to carry out, or a time to wait until. No Temporal,
no I/O, no clock: the workflow asks, runs the effects as activities and waits. The input
is never changed: each transition works on a deep copy.
The numbers and their sources are in docs/rules.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from icr.domain.models import (
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
    ExtendNotification,
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
from icr.domain.rules.checks import (
    EVENT_ID_MAX_CHARS,
    LOGIN_MAX_CHARS,
    SOURCE_MAX_CHARS,
    Refused,
    check_close,
    check_decision,
    check_event,
    check_response,
    printable,
)
from icr.domain.rules.dates import (
    extended_deadline,
    financial_year_end_after,
    inactivity_deadline,
    outage_end,
    outage_extensions,
    policy_wake_at,
    start_of_day_uk,
)
from icr.domain.rules.letters import NOTIFICATION_SUBJECT, notification_letter
from icr.domain.rules.views import stage_of

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
    """A new policy version is in force (this certificate's moment to take it up has come):
    read the registry again."""


@dataclass
class Wait:
    """Nothing to do until `until` (or a message); None means only a message can help."""

    until: datetime | None


def initial_state(case_reference: str) -> CertificateState:
    """A review starts with nothing known but the case reference, until the registry is read."""
    return CertificateState(case_reference=case_reference)




def _note(state: CertificateState, at: datetime, what: str, *, public: str | None = None) -> None:
    """`public`: the same without the login ids `what` names, for the Web UI."""
    state.history.append(HistoryEntry(at=at, what=what, public=public))
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
    registered_now = s.registration is None and snapshot.registration is not None
    s.registration = snapshot.registration
    s.poa_outstanding = snapshot.poa_outstanding
    if snapshot.policy != s.policy:
        if s.policy is not None:
            _note(s, now, f"policy version {snapshot.policy.version} in force "
                          f"({snapshot.policy.inactivity_days} days)")
        s.policy = snapshot.policy
    s.next_policy_change_at = snapshot.next_policy_change_at
    known = {o.outage_id for o in s.outages}
    for outage in snapshot.outages:
        if outage.outage_id not in known:
            _note(s, now, f"outage {outage.outage_id} declared: {outage.starts_at.isoformat()} to "
                          f"{outage.ends_at.isoformat()} ({outage.reason})")
    s.outages = list(snapshot.outages)
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
        # The registry reports newer activity: as good as an event, and as stale as one.
        if not first and _keeps_alive(s, anchor, now):
            s.notification_cycle = 0
            if s.notification is not None:
                effects.append(_close_notification(s, NotificationStatus.ACTIVITY_RECORDED, now))
            effects.extend(_supersede_no_response_task(s, now, "activity recorded"))
    if first:
        _note(s, now, "review started" if s.registration else "review started (not registered)")
    if registered_now and not snapshot.closed and s.task is not None \
            and s.task.kind == TaskKind.REGISTRATION_MISSING:
        # What the task was waiting for has come: the review carries on by itself.
        effects.append(_close_task(s, now, "registered"))
        _note(s, now, "registered: the review carries on")
    if s.notification is not None:
        effects.extend(_extend_for_outages(s, now))
    if snapshot.closed and s.closed_at is None:
        # Closed elsewhere before this run knew: nothing reopens a certificate.
        s.closed_at = now
        s.closed_reason = "already closed in the registry"
        s.notification = None
        s.task = None
    return _settle(Transition(s, effects))


def _keeps_alive(s: CertificateState, at: datetime, now: datetime) -> bool:
    """Activity at `at` makes the certificate no longer inactive: its own deadline is still ahead."""
    if s.policy is None:
        return True
    return at + timedelta(days=s.policy.inactivity_days) > now


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
    revived = False
    # Only screened events get here (check_event), so every one has its time.
    timed = sorted(((e.occurred_at, e) for e in events if e.occurred_at is not None), key=lambda p: p[0])
    for at, event in timed:
        if s.last_activity_at is None or at > s.last_activity_at:
            s.last_activity_at = at
        if event.kind == ActivityKind.BILL:
            if s.last_bill_at is None or at > s.last_bill_at:
                s.last_bill_at = at
            # Only a bill since the response being followed up counts.
            if s.follow_up is not None and (s.follow_up.since is None or at > s.follow_up.since):
                s.follow_up = None
                _note(s, now, "bill received: no follow-up needed")
        if s.clock_from is None or at > s.clock_from:
            s.clock_from = at
            if _keeps_alive(s, at, now):
                revived = True
                _note(s, now, f"activity {event.kind} at {at.isoformat()}: clock restarts")
            else:
                _note(s, now, f"activity {event.kind} at {at.isoformat()} recorded; its own deadline has "
                              "passed, so it moves the deadline but closes nothing")
        else:
            _note(s, now, f"activity {event.kind} at {at.isoformat()} recorded; "
                          "older than the latest, moves no deadline")
    # A stale event must never put off a return or an escalation.
    if revived:
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
    wakes: list[datetime] = []
    # A version dated in the future is taken up at this certificate's own moment shortly after
    # its date; until then it does not fall due under the version going out.
    changing = s.next_policy_change_at is not None and now >= s.next_policy_change_at
    if s.next_policy_change_at is not None:
        wake = policy_wake_at(s.case_reference, s.next_policy_change_at)
        if now >= wake:
            return Reload()
        wakes.append(wake)

    n = s.notification
    if n is not None:
        if s.exercise_response is not None and not s.on_exercise_list:
            # Imported while this notification is open: it answers it (even when its return
            # falls due at the same moment), so nobody chases the provider for it.
            return _apply_exercise(s, now)
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
    # A follow-up due while a notification or a blocking task is open waits until that is
    # settled, so it never takes the place of another task (one open task at a time).
    if s.follow_up is not None and n is None and not blocked:
        if now >= s.follow_up.due_at:
            s2 = s.model_copy(deep=True)
            response = s.follow_up.response
            s2.follow_up = None
            effects = _raise_task(s2, TaskKind.FOLLOW_UP, now, response=response,
                                  detail=f"{RESPONSE_LABELS[response]} kept open, and no bill "
                                         "by the end of the financial year")
            return _settle(Transition(s2, effects))
        wakes.append(s.follow_up.due_at)

    deadline = inactivity_deadline(s)  # None until a registration or an event starts the clock
    if n is None and not blocked and deadline is not None and not changing:
        if now < deadline:
            wakes.append(deadline)
        else:
            # Falling due during a declared outage: raised when the outage ends.
            ends = outage_end(now, s.outages)
            if ends is None:
                return _fall_due(s, now)
            wakes.append(ends)
    return Wait(min(wakes) if wakes else None)


def _fall_due(state: CertificateState, now: datetime) -> Transition:
    s = state.model_copy(deep=True)
    if s.registration is None:
        _note(s, now, "due, but the certificate is not registered: LAA task raised")
        effects = _raise_task(s, TaskKind.REGISTRATION_MISSING, now,
                              detail="certificate fell due for review but is not in the registry; "
                                     "no provider contact to notify")
        return _settle(Transition(s, effects))
    if s.exercise_response is not None and not s.on_exercise_list:
        return _apply_exercise(s, now)
    assert s.policy is not None
    if s.notification_cycle >= s.policy.max_unanswered_cycles:
        # Falling due again in a review whose notifications all went unanswered (one returned
        # when the certificate was not due, then a policy with a lower limit): never a
        # notification past the limit, the escalation instead.
        _note(s, now, f"{s.notification_cycle} cycles unanswered: escalated")
        return _settle(Transition(s, _raise_task(
            s, TaskKind.ESCALATION, now, detail=f"{s.notification_cycle} consecutive notifications "
                                                "unanswered: contract manager intervention")))
    return _settle(Transition(s, _notify(s, now)))


def _notify(s: CertificateState, now: datetime) -> list[Effect]:
    """Mutates `s`: raises the next notification; one whose dates a declared outage already
    moves records that extension too."""
    raised = _raise_notification(s, now)
    assert s.notification is not None
    if not s.notification.extensions:
        return [raised]
    return [raised, _extension_effect(s, now)]


def _extension_effect(s: CertificateState, now: datetime) -> ExtendNotification:
    n = s.notification
    assert n is not None
    return ExtendNotification(case_reference=s.case_reference, notification_id=n.notification_id,
                              due_date=n.due_date, return_date=n.return_date, overdue=n.overdue,
                              extensions=list(n.extensions), at=now)


def _extend_for_outages(s: CertificateState, now: datetime) -> list[Effect]:
    """Mutates `s`: the open notification's due date and return date, worked out again from
    the declared outages (a new outage moves them; it may even take back an overdue)."""
    n = s.notification
    assert n is not None
    # A notification raised before its periods were kept: they are what its dates say.
    if n.response_period is None or n.return_period is None:
        n.response_period = n.due_date - n.date_assigned
        n.return_period = n.return_date - n.date_assigned
    due_date, due_by = extended_deadline(n.date_assigned, n.response_period, s.outages)
    return_date, return_by = extended_deadline(n.date_assigned, n.return_period, s.outages)
    extensions = outage_extensions(s.outages, due_by, return_by)
    if (due_date, return_date, extensions) == (n.due_date, n.return_date, n.extensions):
        return []
    if now >= n.return_date:
        return []  # already returned (the run loop returns it next): too late to extend
    n.due_date, n.return_date, n.extensions = due_date, return_date, extensions
    if n.overdue and now < due_date:
        n.overdue = False
    moved = ", ".join(f"outage {e.outage_id}" for e in extensions) or "no outage"
    _note(s, now, f"notification {n.notification_id} due {due_date.isoformat()}, returned "
                  f"{return_date.isoformat()} ({moved})")
    return [_extension_effect(s, now)]


def _apply_exercise(state: CertificateState, now: datetime) -> Transition:
    """The exercise response answers on the provider's behalf: in place of a notification, or
    as the response to the open one. Used once."""
    s = state.model_copy(deep=True)
    exercise = s.exercise_response
    assert exercise is not None
    s.on_exercise_list = True
    s.exercise_response = None
    key = f"{s.case_reference}-exercise"
    notification_id = s.notification.notification_id if s.notification else None
    _note(s, now, f"exercise response applied: {RESPONSE_LABELS[exercise.response]} "
                  f"(reported {exercise.reported_on.isoformat()})"
                  + (f" as the response to {notification_id}" if notification_id else ""))
    effects: list[Effect] = [
        ClaimExerciseResponse(case_reference=s.case_reference, claim_key=key, at=now),
        RecordResponse(case_reference=s.case_reference, response_key=key, notification_id=notification_id,
                       response=exercise.response, message=None, responded_by=EXERCISE_ACTOR, at=now),
    ]
    s.notification = None  # closed as answered by RecordResponse
    effects.extend(_supersede_no_response_task(s, now, "exercise response applied"))
    # The report was the response: a follow-up's year and the bills that count run from its day.
    effects.extend(_answer(s, exercise.response, now, actor=EXERCISE_ACTOR, notification_id=notification_id,
                           responded_at=start_of_day_uk(exercise.reported_on)))
    return _settle(Transition(s, effects))


def notification_id(case_reference: str, number: int) -> str:
    """The business id of a certificate's `number`th notification, the key of its row and its
    audit entries. Running certificates hold ids of this form: a change to it is a change of
    the workflow (tests/workflow/test_replay.py fails until it is gated, docs/reliability.md)."""
    return f"ICR-{case_reference}-{number:03d}"


def _raise_notification(s: CertificateState, now: datetime) -> RaiseNotification:
    """Mutates `s`: opens the next notification of the current review."""
    assert s.policy is not None and s.registration is not None
    s.notifications_raised += 1
    s.notification_cycle += 1
    due_date, due_by = extended_deadline(now, s.policy.response_due, s.outages)
    return_date, return_by = extended_deadline(now, s.policy.return_after, s.outages)
    notification = OpenNotification(
        notification_id=notification_id(s.case_reference, s.notifications_raised),
        cycle=s.notification_cycle,
        assigned_to=s.registration.provider_contact_login,
        date_assigned=now,
        due_date=due_date,
        return_date=return_date,
        response_period=s.policy.response_due,
        return_period=s.policy.return_after,
        extensions=outage_extensions(s.outages, due_by, return_by),
    )
    s.notification = notification
    _note(s, now, f"notification {notification.notification_id} raised "
                  f"(cycle {notification.cycle}) to {notification.assigned_to}",
          public=f"notification {notification.notification_id} raised (cycle {notification.cycle})")
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
        letter=notification_letter(s.case_reference, notification.due_date,
                                   response_due=s.policy.response_due, return_after=s.policy.return_after),
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
        effects.extend(_raise_task(s, TaskKind.ESCALATION, now,
                                   notification_id=returned.notification_id,
                                   detail=f"{s.notification_cycle} consecutive notifications "
                                          "unanswered: contract manager intervention"))
    elif s.on_exercise_list:
        effects.extend(_raise_task(s, TaskKind.NO_RESPONSE, now,
                                   notification_id=returned.notification_id,
                                   detail="no response in 21 days; exercise certificate, not resent"))
    elif _still_due(s, now):
        effects.extend(_raise_task(s, TaskKind.NO_RESPONSE, now, blocking=False,
                                   notification_id=returned.notification_id,
                                   detail="no response in 21 days; notification resent"))
        effects.extend(_notify(s, now))
    else:
        # Not due now (a policy lengthened since it was raised, an outage going on): the next
        # notification of this review waits until the certificate falls due again, as any
        # other would. The cycle count stands: only activity or an answer restarts the review.
        _note(s, now, "not due now: the next notification waits until the certificate falls due")
        effects.extend(_raise_task(s, TaskKind.NO_RESPONSE, now, blocking=False,
                                   notification_id=returned.notification_id,
                                   detail="no response in 21 days; resent when the certificate falls due again"))
    return _settle(Transition(s, effects))


def _still_due(s: CertificateState, now: datetime) -> bool:
    """Whether a notification may be raised now, as `next_step` would raise one: due under
    the policy in force, outside a declared outage, with no policy version being taken up."""
    deadline = inactivity_deadline(s)
    changing = s.next_policy_change_at is not None and now >= s.next_policy_change_at
    return deadline is not None and now >= deadline and outage_end(now, s.outages) is None and not changing


def _close_notification(s: CertificateState, status: NotificationStatus, now: datetime) -> CloseNotification:
    assert s.notification is not None
    closed = s.notification
    s.notification = None
    _note(s, now, f"notification {closed.notification_id} closed: {status.value}")
    return CloseNotification(case_reference=s.case_reference, notification_id=closed.notification_id,
                             status=status, at=now)


def _raise_task(s: CertificateState, kind: TaskKind, now: datetime, *, detail: str,
                blocking: bool = True, notification_id: str | None = None,
                response: Response | None = None, responded_at: datetime | None = None) -> list[Effect]:
    """Mutates `s`: opens a new LAA task. One open task at a time: a task still open is
    closed first, with the reason recorded, never overwritten unseen."""
    effects: list[Effect] = []
    s.tasks_raised += 1
    task_id = f"TASK-{s.case_reference}-{s.tasks_raised:03d}"
    if s.task is not None:
        effects.append(_close_task(s, now, f"superseded by {task_id} ({kind.value})"))
    s.task = OpenTask(task_id=task_id, kind=kind, raised_at=now, response=response,
                      responded_at=responded_at, blocking=blocking)
    _note(s, now, f"LAA task {task_id} raised: {kind.value}")
    effects.append(RaiseTask(case_reference=s.case_reference, task_id=task_id, task_kind=kind,
                             notification_id=notification_id, response=response, detail=detail, at=now))
    return effects


def _close_task(s: CertificateState, now: datetime, reason: str, *, public: str | None = None) -> CloseTask:
    """Mutates `s`: the engine closes the open task (no caseworker decision), saying why."""
    assert s.task is not None
    task = s.task
    s.task = None
    _note(s, now, f"LAA task {task.task_id} closed: {reason}",
          public=None if public is None else f"LAA task {task.task_id} closed: {public}")
    return CloseTask(case_reference=s.case_reference, task_id=task.task_id, decision=None,
                     decided_by=ENGINE_ACTOR, reason=reason, at=now)


def _supersede_no_response_task(s: CertificateState, now: datetime, why: str) -> list[Effect]:
    if s.task is None or s.task.blocking or s.task.kind != TaskKind.NO_RESPONSE:
        return []
    return [_close_task(s, now, f"superseded: {why}")]


def _restart_clock(s: CertificateState, now: datetime) -> None:
    # Never back: an event dated up to 5 minutes ahead may already have moved it past now.
    s.clock_from = now if s.clock_from is None else max(s.clock_from, now)
    s.notification_cycle = 0


def _answer(s: CertificateState, response: Response, now: datetime, *, actor: str,
            notification_id: str | None = None, responded_at: datetime | None = None) -> list[Effect]:
    """Where a response leads (the provider's, or an exercise response). Mutates `s`."""
    if response == Response.CASE_ONGOING:
        s.last_activity_at = now
        _restart_clock(s, now)
        _note(s, now, "Case Ongoing: clock restarts")
        return []
    if response in BILLED_RESPONSES:
        who = "the exercise list" if actor == EXERCISE_ACTOR else "provider"
        return _raise_task(s, TaskKind.REVIEW, now, response=response, notification_id=notification_id,
                           responded_at=responded_at or now,
                           detail=f"{who} answered {RESPONSE_LABELS[response]}: close or keep open")
    assert response == Response.COMPLETE_NO_BILL_DUE
    return [_close_certificate(s, now, reason="Case Complete No Bill Due", actor=actor, recoup=True)]


def _close_certificate(s: CertificateState, now: datetime, *, reason: str, actor: str,
                       recoup: bool) -> CloseCertificate:
    s.closed_at = now
    s.closed_reason = reason
    s.follow_up = None
    # The reason may be a caseworker's or another system's free text: not for the Web UI.
    _note(s, now, f"certificate closed: {reason}", public="certificate closed")
    return CloseCertificate(case_reference=s.case_reference, recoupment_id=f"RCP-{s.case_reference}",
                            recoup=recoup, reason=reason, actor=actor, at=now)


def apply_response(state: CertificateState, request: RespondRequest, now: datetime) -> Transition:
    """Case Ongoing restarts the clock, a billed response goes to LAA review, No Bill Due closes and recoups."""
    # The provider's answer, already checked and authorized.
    response = check_response(state, request, now)
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
                  f"to {notification_id}",
          public=f"provider answered {RESPONSE_LABELS[response]} to {notification_id}")
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
    _note(s, now, f"{request.caseworker} decided {decision.value} on {task.task_id}",
          public=f"caseworker decided {decision.value} on {task.task_id}")
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
        s.follow_up = None  # a follow-up still waiting is for an older response: this one replaces it
        since = task.responded_at or task.raised_at
        if s.last_bill_at is not None and s.last_bill_at > since:
            # A bill after the response counts, before the decision as well as after it.
            _note(s, now, f"kept open: billed since the response ({s.last_bill_at.isoformat()}), no follow-up")
        else:
            s.follow_up = FollowUpWatch(response=task.response, due_at=financial_year_end_after(since),
                                        since=since)
            _note(s, now, f"kept open: follow-up due {s.follow_up.due_at.isoformat()} unless a bill arrives")
    return _settle(Transition(s, effects))


def refuse_decision(state: CertificateState, request: LaaDecisionRequest, refused: Refused,
                    now: datetime) -> Transition:
    """A refused decision changes nothing but is audited, each refusal under its own key."""
    s = state.model_copy(deep=True)
    s.refusals += 1
    _note(s, now, f"decision by {printable(request.caseworker, LOGIN_MAX_CHARS)!r} refused: {refused.message}",
          public=f"decision refused: {refused.message}")
    detail = {"decision": printable(request.decision, 100)}
    if request.task_id is not None:
        detail["task_id"] = printable(request.task_id, 100)
    return Transition(s, [AuditRefusal(
        case_reference=s.case_reference, refusal_key=f"{s.case_reference}-decision-{s.refusals}-refused",
        actor=printable(request.caseworker, LOGIN_MAX_CHARS) or "unknown", action="decision_refused",
        reason=refused.message,
        detail=detail, at=now)])


def _closing_system(request: CloseCertificateRequest) -> str:
    """Who closed it: the system the signal names (bounded), or that it named none."""
    system = (request.system or "").strip()[:100]
    return f"close_certificate from {system}" if system else "close_certificate (no system named)"


def refuse_close(state: CertificateState, request: CloseCertificateRequest, refused: Refused,
                 now: datetime) -> Transition:
    """A refused close signal closes nothing but is audited, each refusal under its own key."""
    s = state.model_copy(deep=True)
    s.refusals += 1
    _note(s, now, f"close_certificate refused: {refused.message}")
    return Transition(s, [AuditRefusal(
        case_reference=s.case_reference, refusal_key=f"{s.case_reference}-close-{s.refusals}-refused",
        actor="close_certificate", action="close_refused", reason=refused.message,
        # Not "reason": that key of the audit row holds why it was refused.
        detail={"close_reason": printable(request.reason, 200),
                "occurred_at": request.occurred_at.isoformat() if request.occurred_at else ""}, at=now)])


def apply_close(state: CertificateState, request: CloseCertificateRequest, now: datetime) -> Transition:
    """A certificate closed elsewhere closes its open notification and task, and recoups nothing."""
    check_close(request)
    s = state.model_copy(deep=True)
    if s.closed_at is not None:
        return Transition(s)
    effects: list[Effect] = []
    if s.notification is not None:
        effects.append(_close_notification(s, NotificationStatus.CERTIFICATE_CLOSED, now))
    if s.task is not None:
        effects.append(_close_task(s, now, f"certificate closed: {request.reason}", public="certificate closed"))
    effects.append(_close_certificate(s, now, reason=f"closed elsewhere: {request.reason}",
                                      actor=_closing_system(request), recoup=False))
    return _settle(Transition(s, effects))


def apply_reassign(state: CertificateState, request: ReassignContactRequest, now: datetime) -> Transition:
    """Later notifications go to the new provider contact; the open one stays with its assignee."""
    s = state.model_copy(deep=True)
    assert s.registration is not None
    old = s.registration.provider_contact_login
    s.registration.provider_contact_login = request.new_contact_login_id
    _note(s, now, f"{request.user_login_id} reassigned the provider contact from {old} "
                  f"to {request.new_contact_login_id}", public="provider contact reassigned")
    return Transition(s, [UpdateContact(case_reference=s.case_reference,
                                        new_contact_login_id=request.new_contact_login_id,
                                        actor=request.user_login_id, at=now)])
