"""The review rules as a state machine, over random histories (hypothesis stateful testing).

One certificate lives through random sequences of what the world sends it: qualifying and
other events (on time, late, a few minutes ahead, too far ahead, duplicated), time passing by
random amounts and to the exact instants where something falls due, responses by random
users, caseworker decisions (stale task ids included), reassignments, registration and
activity arriving by import, exercise responses, policy versions, outages and closes. The
machine drives `icr.domain.rules` as the workflow does (messages first, then the passage of
time), carries out every effect on a small in-memory registry, and after every step checks the
invariants of docs/rules.md against its own bookkeeping, never against the rules' own sums.

Deterministic (derandomized, no example database): the same sequences run everywhere. A
failure hypothesis finds is shrunk; each one found so far is kept as a regular test at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    AuditRefusal,
    Caseworker,
    CertificateSnapshot,
    CertificateState,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseCertificateRequest,
    CloseNotification,
    CloseTask,
    Decision,
    ExerciseResponse,
    ExtendNotification,
    LaaDecisionRequest,
    LedgerEvent,
    MarkNotificationOverdue,
    NotificationStatus,
    Outage,
    OutageDeclaration,
    Policy,
    PolicyChange,
    RaiseNotification,
    RaiseTask,
    ReassignContactRequest,
    RecordResponse,
    Registration,
    RespondRequest,
    Response,
    TaskKind,
    UpdateContact,
    User,
)
from icr.domain.rules import Refused, Reload, Transition, Wait

UK = ZoneInfo("Europe/London")
CASE = "300001416143"
FIRM, OTHER_FIRM = "26517", "31337"
RESPONDING = {"case_management", "case_management_supervisor"}
BILLED = {Response.COMPLETE_TO_BE_BILLED, Response.COMPLETE_COSTS_NEGOTIATED, Response.COMPLETE_COURT_ASSESSMENT}

# The firm's users, one of each kind the rules tell apart, and one of another firm.
USERS = {u.login_id: u for u in [
    User(login_id="CONTACT1", provider_firm_id=FIRM, roles=["case_management"]),
    User(login_id="SUPER1", provider_firm_id=FIRM, roles=["case_management_supervisor"]),
    User(login_id="CROSS1", provider_firm_id=FIRM, roles=["case_management", "cross_office"]),
    User(login_id="CROSSBILL", provider_firm_id=FIRM, roles=["bill_preparation", "cross_office"]),
    User(login_id="CROSSONLY", provider_firm_id=FIRM, roles=["cross_office"]),
    User(login_id="MANAGER1", provider_firm_id=FIRM, roles=["office_manager"]),
    User(login_id="BILLER1", provider_firm_id=FIRM, roles=["bill_preparation", "bill_supervisor"]),
    User(login_id="LEGACY1", provider_firm_id=FIRM, roles=["case_management"], pre_silas=True),
    User(login_id="LEGACYX", provider_firm_id=FIRM, roles=["case_management", "cross_office"], pre_silas=True),
    User(login_id="OUTSIDER", provider_firm_id=OTHER_FIRM, roles=["case_management", "cross_office"]),
]}
LOGINS = [*USERS, "NOBODY"]
IMPORTED_CONTACTS = ["CONTACT1", "SUPER1", "LEGACY1"]  # firm users an import may name
CASEWORKERS = {"CW1": Caseworker(caseworker_id="CW1", active=True),
               "GONE": Caseworker(caseworker_id="GONE", active=False)}
KINDS = [k.value for k in rules.ActivityKind]
OTHER_KINDS = ["case_enquiry", "means_reassessment"]

# Policies the rules ship with (the first migration's two versions).
TICK = timedelta(microseconds=1)
ACTIVITY_CAUSES = {"events", "load", "reload", "start"}
SHIPPED = [
    Policy(version=1, inactivity_days=365, effective_from=datetime(2000, 1, 1, tzinfo=UTC)),
    Policy(version=2, inactivity_days=608, effective_from=datetime(2026, 5, 16, 23, 0, tzinfo=UTC)),
]


# --- the oracle's own arithmetic (written from docs/rules.md, not taken from the rules) -------


def may_respond(login: str, assigned: str | None) -> bool:
    u = USERS.get(login)
    return (u is not None and u.provider_firm_id == FIRM and not u.pre_silas and bool(RESPONDING & set(u.roles))
            and (login == assigned or "cross_office" in u.roles))


def may_reassign(login: str, new_contact: str) -> bool:
    u, n = USERS.get(login), USERS.get(new_contact)
    return (u is not None and n is not None and u.provider_firm_id == FIRM and n.provider_firm_id == FIRM
            and "cross_office" in u.roles and bool(set(u.roles) - {"cross_office"}) and not u.pre_silas
            and not n.pre_silas and bool(RESPONDING & set(n.roles)))


def uptime(start: datetime, end: datetime, windows: list[tuple[datetime, datetime]]) -> timedelta:
    """Time between `start` and `end` that no window covers (overlapping windows once)."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in windows if a < end and b > start)
    down = timedelta(0)
    reach = start
    for a, b in clipped:
        a = max(a, reach)
        if b > a:
            down += b - a
            reach = b
    return (end - start) - down


def financial_year_end(after: datetime) -> datetime:
    """00:00 UK time on the first 1 April after `after`."""
    local = after.astimezone(UK)
    candidate = datetime(local.year, 4, 1, tzinfo=UK)
    if candidate <= after:
        candidate = datetime(local.year + 1, 4, 1, tzinfo=UK)
    return candidate.astimezone(UTC)


def day_start_uk(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UK).astimezone(UTC)


@dataclass
class DeclaredOutage:
    outage: Outage
    declared_at: datetime


@dataclass
class Records:
    """What the database would hold: notifications, tasks, recoupments, the ledger, the registry."""

    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    recoupments: list[Decimal] = field(default_factory=list)
    ledger: dict[str, LedgerEvent] = field(default_factory=dict)
    seq: int = 0
    audit: list[AuditRefusal] = field(default_factory=list)


class CertificateLife(RuleBasedStateMachine):
    """One certificate's life; the rules drive it, the oracle watches."""

    def __init__(self) -> None:
        super().__init__()
        self.db = Records()
        self.policies = list(SHIPPED)
        self.outages: list[DeclaredOutage] = []
        self.exercise: ExerciseResponse | None = None
        self.exercise_claims = 0
        self.registration: Registration | None = None
        self.imported_contact: str | None = None
        self.registry_activity: datetime | None = None
        self.registry_closed = False
        self.poa = (Decimal("0.00"), Decimal("0.00"))
        self.closures = 0
        self.closed_core: dict[str, Any] | None = None
        self.settled = True
        # The oracle: where the clock runs from, reviews awaiting a decision on a billed
        # response (task id -> when the response was given), and the follow-up watch.
        self.clock: datetime | None = None
        self.activity: datetime | None = None
        self.reviews: dict[str, datetime] = {}
        self.watch: datetime | None = None
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.state = CertificateState(case_reference=CASE)

    # --- the world ------------------------------------------------------------------------

    def policy_in_force(self, at: datetime) -> Policy:
        return max((p for p in self.policies if p.effective_from <= at), key=lambda p: (p.effective_from, p.version))

    def windows(self, declared_by: datetime, *, strictly: bool = False) -> list[tuple[datetime, datetime]]:
        return [(d.outage.starts_at, d.outage.ends_at) for d in self.outages
                if (d.declared_at < declared_by if strictly else d.declared_at <= declared_by)]

    def in_outage(self, at: datetime) -> bool:
        return any(a <= at < b for a, b in self.windows(at))

    def snapshot(self) -> CertificateSnapshot:
        """What `load_certificate` reads from the registry now."""
        later = [p.effective_from for p in self.policies if p.effective_from > self.now]
        open_since = self.state.notification.date_assigned if self.state.notification else self.now
        horizon = min(self.now, open_since)
        latest = max((e.occurred_at for e in self.db.ledger.values()), default=None)
        if self.registration is not None and self.registry_activity is not None:
            latest = self.registry_activity if latest is None else max(latest, self.registry_activity)
        return CertificateSnapshot(
            case_reference=CASE, registration=self.registration.model_copy() if self.registration else None,
            last_activity_at=latest, closed=self.registry_closed,
            exercise_response=self.exercise if self.exercise_claims == 0 else None,
            policy=self.policy_in_force(self.now), next_policy_change_at=min(later, default=None),
            outages=sorted((d.outage for d in self.outages if d.outage.ends_at > horizon),
                           key=lambda o: (o.starts_at, o.outage_id)),
            poa_outstanding=None if self.registration is None else str(self.poa[0] - self.poa[1]))

    def anchor(self, at: datetime) -> None:
        """The oracle's clock: the latest of every qualifying activity, keep-open decision and
        Case Ongoing answer, or the grant date when there is no activity at all."""
        self.clock = at if self.clock is None else max(self.clock, at)

    def active(self, at: datetime) -> None:
        """Qualifying activity at `at`: the last activity, and the clock, move to it if later."""
        self.activity = at if self.activity is None else max(self.activity, at)
        self.anchor(at)

    def due_at(self) -> datetime | None:
        if self.clock is None or self.state.policy is None:
            return None
        return self.clock + timedelta(days=self.state.policy.inactivity_days)

    # --- driving the rules as the workflow does --------------------------------------------

    def run(self, t: Transition, cause: str, *, fresh: bool | None = None) -> None:
        self.check_transition(self.state, t, cause, fresh)
        for effect in t.effects:
            self.carry_out(effect)
        self.state = t.state

    def load(self, cause: str = "load") -> None:
        snap = self.snapshot()
        fresh = None
        # Newer activity the registry reports is as good as an event, and as stale as one.
        if snap.last_activity_at is not None:
            self.activity = max(self.activity or snap.last_activity_at, snap.last_activity_at)
        # The last activity, or the start of the grant date when it has had none.
        latest = self.activity
        if latest is None and snap.registration is not None:
            latest = day_start_uk(snap.registration.granted_on)
        if self.state.loaded and latest is not None and (self.state.clock_from is None
                                                         or latest > self.state.clock_from):
            fresh = latest + timedelta(days=snap.policy.inactivity_days) > self.now
        if latest is not None:
            self.anchor(latest)
        self.run(rules.load(self.state, snap, self.now), cause, fresh=fresh)

    def settle(self, until: datetime, *, at_until: bool = True) -> None:
        """Let time pass to `until`: every step due before it (and at it, with `at_until`)."""
        for _ in range(500):
            if self.state.closed_at is not None:
                break
            step = rules.next_step(self.state, self.now)
            if isinstance(step, Transition):
                self.run(step, "time")
                continue
            if isinstance(step, Reload):
                self.load("reload")
                continue
            assert isinstance(step, Wait)
            assert step.until is None or step.until > self.now, \
                f"next_step waits until {step.until}, not after now {self.now}: the workflow would spin"
            if step.until is None or step.until > until or (step.until == until and not at_until):
                break
            self.now = step.until
        else:
            raise AssertionError("no quiet moment after 500 steps: the rules go round in circles")
        self.now = until
        # Without `at_until`, what falls due exactly now waits for the next message or step.
        self.settled = at_until or self.state.closed_at is not None

    def after_message(self) -> None:
        self.settle(self.now)

    # --- the records ------------------------------------------------------------------------

    def carry_out(self, effect: Any) -> None:
        db = self.db
        if isinstance(effect, RaiseNotification):
            assert effect.notification_id not in db.notifications, f"{effect.notification_id} raised twice"
            db.notifications[effect.notification_id] = {
                "open": True, "status": "Open", "cycle": effect.cycle, "date_assigned": effect.date_assigned,
                "due_date": effect.due_date, "return_date": effect.return_date, "assigned_to": effect.assigned_to}
        elif isinstance(effect, MarkNotificationOverdue):
            db.notifications[effect.notification_id]["status"] = "Overdue"
        elif isinstance(effect, ExtendNotification):
            row = db.notifications[effect.notification_id]
            row.update(due_date=effect.due_date, return_date=effect.return_date)
            if not effect.overdue and row["open"]:
                row["status"] = "Open"
        elif isinstance(effect, CloseNotification):
            row = db.notifications[effect.notification_id]
            if row["open"]:
                row.update(open=False, status=effect.status.value)
        elif isinstance(effect, RecordResponse):
            if effect.notification_id is not None:
                row = db.notifications[effect.notification_id]
                assert row["open"], f"a response recorded against {effect.notification_id}, which is closed"
                row.update(open=False, status="Responded")
            if effect.response == Response.CASE_ONGOING:
                self.active(effect.at)  # the answer counts as activity
                db.seq += 1
                key = f"{effect.response_key}-ongoing"
                db.ledger.setdefault(key, LedgerEvent(seq=db.seq, event_id=key, kind="icr_ongoing_response",
                                                      occurred_at=effect.at))
        elif isinstance(effect, RaiseTask):
            assert effect.task_id not in db.tasks, f"{effect.task_id} raised twice"
            db.tasks[effect.task_id] = {"open": True, "kind": effect.task_kind, "at": effect.at}
        elif isinstance(effect, CloseTask):
            row = db.tasks[effect.task_id]
            assert row["open"], f"{effect.task_id} closed twice"
            row.update(open=False, decision=effect.decision)
        elif isinstance(effect, ClaimExerciseResponse):
            self.exercise_claims += 1
        elif isinstance(effect, CloseCertificate):
            self.registry_closed = True
            outstanding = self.poa[0] - self.poa[1]
            if effect.recoup and self.registration is not None and outstanding > 0:
                db.recoupments.append(outstanding)
                self.poa = (self.poa[0], self.poa[0])
        elif isinstance(effect, UpdateContact):
            assert self.registration is not None
            self.registration.provider_contact_login = effect.new_contact_login_id
        elif isinstance(effect, AuditRefusal):
            db.audit.append(effect)
        else:  # pragma: no cover - a new effect kind must be modelled here
            raise AssertionError(f"unmodelled effect {effect!r}")

    # --- what every transition must respect -------------------------------------------------

    def check_transition(self, before: CertificateState, t: Transition, cause: str, fresh: bool | None) -> None:
        after, effects, now = t.state, t.effects, self.now
        if before.closed_at is not None:
            assert all(isinstance(e, AuditRefusal) for e in effects), f"a closed certificate changed: {effects}"
            return
        open_n = before.notification
        open_task = before.task
        returned_cycle: int | None = None
        recouping = any(isinstance(e, RecordResponse) and e.response == Response.COMPLETE_NO_BILL_DUE
                        for e in effects) or any(isinstance(e, CloseTask) and e.decision == Decision.CLOSE
                                                 for e in effects)
        for e in effects:
            if isinstance(e, CloseNotification):
                assert open_n is not None and e.notification_id == open_n.notification_id, \
                    f"closed {e.notification_id}, which is not the open notification"
                if e.status == NotificationStatus.NO_RESPONSE:
                    period = open_n.return_period or (open_n.return_date - open_n.date_assigned)
                    assert now == open_n.return_date, f"returned at {now}, its return date is {open_n.return_date}"
                    assert uptime(open_n.date_assigned, now, self.windows(now, strictly=True)) == period, \
                        f"returned at {now}: not {period} of CCMS time after {open_n.date_assigned}"
                    returned_cycle = before.notification_cycle
                if e.status == NotificationStatus.ACTIVITY_RECORDED:
                    assert fresh, f"{cause}: a stale event (or none) closed {e.notification_id}"
                open_n = None
            elif isinstance(e, RecordResponse):
                if e.notification_id is not None:
                    assert open_n is not None and e.notification_id == open_n.notification_id
                    assert now < open_n.return_date, "a response recorded at or after the return date"
                    open_n = None
            elif isinstance(e, MarkNotificationOverdue):
                assert open_n is not None and e.notification_id == open_n.notification_id
                period = open_n.response_period or (open_n.due_date - open_n.date_assigned)
                assert now == open_n.due_date
                assert uptime(open_n.date_assigned, now, self.windows(now)) == period, \
                    f"overdue at {now}, not {period} of CCMS time after {open_n.date_assigned}"
            elif isinstance(e, RaiseNotification):
                assert open_n is None, f"{e.notification_id} raised while {open_n and open_n.notification_id} is open"
                assert open_task is None or not open_task.blocking, \
                    f"{e.notification_id} raised while task {open_task and open_task.task_id} awaits a decision"
                assert before.registration is not None and after.policy is not None
                assert e.assigned_to == before.registration.provider_contact_login
                assert e.date_assigned == now
                due = self.due_at()
                assert due is not None and due <= now, f"{e.notification_id} raised at {now}, due only at {due}"
                assert not self.in_outage(now), f"{e.notification_id} raised during a declared outage"
                assert e.cycle <= after.policy.max_unanswered_cycles, \
                    f"cycle {e.cycle} raised, the limit is {after.policy.max_unanswered_cycles}"
                if returned_cycle is not None:
                    assert self.exercise_claims == 0, "an exercise-list certificate was sent a notification again"
                    assert returned_cycle < after.policy.max_unanswered_cycles, "resent after the escalation limit"
                windows = self.windows(now)
                assert uptime(now, e.due_date, windows) == after.policy.response_due
                assert uptime(now, e.return_date, windows) == after.policy.return_after
                for deadline, period in [(e.due_date, after.policy.response_due),
                                         (e.return_date, after.policy.return_after)]:
                    assert uptime(now, deadline - TICK, windows) < period, f"{deadline} is later than it needs to be"
                assert after.notification is not None
                open_n = after.notification
            elif isinstance(e, ExtendNotification):
                assert open_n is not None and e.notification_id == open_n.notification_id
                assert now < open_n.return_date, "a returned notification extended"
                windows = self.windows(now)
                for deadline, period in [(e.due_date, open_n.response_period), (e.return_date, open_n.return_period)]:
                    assert period is not None
                    assert uptime(open_n.date_assigned, deadline, windows) == period
                    assert uptime(open_n.date_assigned, deadline - TICK, windows) < period
            elif isinstance(e, CloseTask):
                assert open_task is not None and e.task_id == open_task.task_id, f"closed {e.task_id}, not open"
                if cause in ACTIVITY_CAUSES and not fresh and open_task.kind == TaskKind.NO_RESPONSE:
                    raise AssertionError(f"a stale event superseded task {e.task_id}")
                open_task = None
            elif isinstance(e, RaiseTask):
                assert open_task is None, f"{e.task_id} raised over open task {open_task and open_task.task_id}"
                if e.task_kind == TaskKind.FOLLOW_UP:
                    assert self.watch is not None, f"follow-up {e.task_id} raised with no billed response kept open"
                    assert now >= financial_year_end(self.watch), \
                        f"follow-up at {now}, before the year end after {self.watch}"
                    assert not self.billed_since(self.watch), f"follow-up {e.task_id} raised though a bill came"
                    self.watch = None
                if e.task_kind == TaskKind.ESCALATION:
                    # At the return of the last cycle allowed, or falling due again past it.
                    assert after.policy is not None
                    assert (returned_cycle if returned_cycle is not None else before.notification_cycle) \
                        >= after.policy.max_unanswered_cycles, "escalated before the limit"
                if e.task_kind == TaskKind.REGISTRATION_MISSING:
                    assert before.registration is None
                if e.task_kind == TaskKind.REVIEW:
                    assert e.response in BILLED
                    claimed = any(isinstance(x, ClaimExerciseResponse) for x in effects)
                    assert not claimed or self.exercise is not None
                    self.reviews[e.task_id] = day_start_uk(self.exercise.reported_on) \
                        if claimed and self.exercise else now
                assert after.task is not None
                open_task = after.task
            elif isinstance(e, CloseCertificate):
                self.closures += 1
                assert self.closures == 1, "closed twice"
                assert recouping or cause == "close", f"closed by {cause} with no recouping path"
                assert e.recoup == (recouping and cause != "close"), \
                    f"recoup={e.recoup} on {cause} (recouping path: {recouping})"
                self.watch = None
            elif isinstance(e, ClaimExerciseResponse):
                assert self.exercise_claims == 0, "an exercise response applied twice"
        if cause in ACTIVITY_CAUSES and not fresh:
            assert after.notification_cycle == before.notification_cycle, "a stale event reset the cycle count"
        if cause in ACTIVITY_CAUSES and fresh and before.notification is not None:
            assert after.notification is None, "fresh activity left the notification open"
            assert after.notification_cycle == 0

    def billed_since(self, since: datetime) -> bool:
        return any(e.kind == "bill" and e.occurred_at > since for e in self.db.ledger.values())

    # --- the start -----------------------------------------------------------------------------

    @initialize(
        start_days=st.integers(0, 1100), start_seconds=st.integers(0, 86_399),
        registered=st.sampled_from([True, True, True, False]), granted_days=st.integers(0, 1500),
        active_days=st.one_of(st.none(), st.integers(0, 900)),
        poa=st.sampled_from([("0.00", "0.00"), ("1000.00", "250.00"), ("500.00", "500.00")]),
    )
    def start(self, start_days: int, start_seconds: int, registered: bool, granted_days: int,
              active_days: int | None, poa: tuple[str, str]) -> None:
        self.now = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(days=start_days, seconds=start_seconds)
        self.poa = (Decimal(poa[0]), Decimal(poa[1]))
        if registered:
            self.registration = Registration(provider_firm_id=FIRM, office_code="2L847Q",
                                             provider_contact_login="CONTACT1",
                                             granted_on=(self.now - timedelta(days=granted_days)).date())
            self.imported_contact = "CONTACT1"
            self.registry_activity = None if active_days is None else self.now - timedelta(days=active_days)
        self.load("start")
        if not registered:
            # An activity source's event started this review.
            self.record([("EV-START", "amendment", self.now - timedelta(days=active_days or 0))])
        self.after_message()

    # --- time ----------------------------------------------------------------------------------

    @rule(amount=st.one_of(st.integers(1, 3600).map(lambda s: timedelta(seconds=s)),
                           st.integers(1, 72).map(lambda h: timedelta(hours=h)),
                           st.integers(1, 60).map(lambda d: timedelta(days=d)),
                           st.integers(60, 500).map(lambda d: timedelta(days=d))),
          at_until=st.booleans())
    def time_passes(self, amount: timedelta, at_until: bool) -> None:
        self.settle(self.now + amount, at_until=at_until)

    @rule(pick=st.integers(0, 8), offset=st.sampled_from([timedelta(0), -timedelta(seconds=1),
                                                          timedelta(seconds=1)]), at_until=st.booleans())
    def time_reaches_a_boundary(self, pick: int, offset: timedelta, at_until: bool) -> None:
        """To just before, at or just after an instant where something happens."""
        marks: list[datetime] = []
        n = self.state.notification
        if n is not None:
            marks += [n.due_date, n.return_date]
        if self.due_at() is not None:
            marks.append(self.due_at())  # type: ignore[arg-type]
        if self.watch is not None:
            marks.append(financial_year_end(self.watch))
        marks += [p.effective_from for p in self.policies]
        marks += [rules.policy_wake_at(CASE, p.effective_from) for p in self.policies]
        marks += [x for d in self.outages for x in (d.outage.starts_at, d.outage.ends_at)]
        marks.append(financial_year_end(self.now))
        ahead = sorted({m + offset for m in marks if m + offset > self.now})
        if ahead:
            self.settle(ahead[min(pick, len(ahead) - 1)], at_until=at_until)

    # --- messages --------------------------------------------------------------------------------

    def record(self, events: list[tuple[str, str, datetime | None]]) -> None:
        """A `record_activity` batch, as `_record_events` takes it: screened, into the ledger
        (the first content under an id wins), then applied above the watermark."""
        batch = [ActivityEvent(event_id=i, kind=k, occurred_at=at, source="ccms") for i, k, at in events]
        accepted, refusals = rules.screen_events(self.state, batch, self.now)
        for refusal in refusals:
            self.carry_out(refusal)
        for ev in batch:
            assert ev.occurred_at is not None
            future = ev.occurred_at > self.now + timedelta(minutes=5)
            assert (ev in accepted) == (ev.kind in KINDS and not future), f"{ev} screened wrongly"
        rows: list[LedgerEvent] = []
        for ev in accepted:
            assert ev.occurred_at is not None
            if ev.event_id not in self.db.ledger:
                self.db.seq += 1
                self.db.ledger[ev.event_id] = LedgerEvent(seq=self.db.seq, event_id=ev.event_id, kind=ev.kind,
                                                          occurred_at=ev.occurred_at)
            rows.append(self.db.ledger[ev.event_id])
        new = [r for r in rows if r.seq > self.state.ledger_applied]
        fresh = None
        if new and self.state.policy is not None:
            clock = self.state.clock_from
            fresh = any((clock is None or r.occurred_at > clock)
                        and r.occurred_at + timedelta(days=self.state.policy.inactivity_days) > self.now for r in new)
        for r in new:
            self.active(r.occurred_at)
        if rows:
            self.run(rules.apply_ledger_events(self.state, rows, self.now), "events", fresh=fresh)

    @rule(events=st.lists(st.tuples(
        st.sampled_from(["new", "new", "new", "repeat"]),
        st.sampled_from(KINDS + ["bill", "bill"] + OTHER_KINDS),
        st.one_of(st.integers(0, 3600).map(lambda s: -timedelta(seconds=s)),
                  st.integers(0, 900).map(lambda d: -timedelta(days=d)),
                  st.integers(1, 4).map(lambda m: timedelta(minutes=m)),
                  st.integers(6, 60 * 24 * 30).map(lambda m: timedelta(minutes=m)))), min_size=1, max_size=3))
    def activity_reported(self, events: list[tuple[str, str, timedelta]]) -> None:
        if self.state.closed_at is not None:
            return  # the review has ended: signal-with-start is refused (CertificateClosed)
        batch: list[tuple[str, str, datetime | None]] = []
        for how, kind, offset in events:
            known = sorted(self.db.ledger)
            event_id = known[len(batch) % len(known)] if how == "repeat" and known else f"EV-{self.db.seq + len(batch) + 1}-{len(self.db.audit)}"
            batch.append((event_id, kind, self.now + offset))
        self.record(batch)
        self.after_message()

    @precondition(lambda self: self.state.notification is not None)
    @rule(login=st.sampled_from(["CONTACT1", "CONTACT1", "CROSS1", "SUPER1"]), response=st.sampled_from(list(Response)))
    def provider_answers(self, login: str, response: Response) -> None:
        """The provider answers the open notification (refused if that user may not)."""
        self.provider_responds(login, response.value, False)

    @rule(login=st.sampled_from(LOGINS), response=st.sampled_from([r.value for r in Response] + ["maybe"]),
          long_message=st.booleans())
    def provider_responds(self, login: str, response: str, long_message: bool) -> None:
        request = RespondRequest(user_login_id=login, response=response,
                                 message="x" * (2001 if long_message else 20))
        before = self.state.model_dump()
        n = self.state.notification
        expected = (self.state.closed_at is None and n is not None and self.now < n.return_date
                    and response in [r.value for r in Response] and not long_message
                    and may_respond(login, n.assigned_to))
        try:
            rules.check_response(self.state, request, self.now)
            rules.authorize_response(self.state, USERS.get(login), login)
        except Refused as refused:
            assert self.state.model_dump() == before, "a refusal changed the state"
            assert not expected, f"{login} answering {response} refused: {refused.code}"
            return
        assert expected, f"{login} answering {response} accepted (closed={self.state.closed_at}, notification={n})"
        self.run(rules.apply_response(self.state, request, self.now), f"respond:{response}")
        self.after_message()

    @precondition(lambda self: self.state.task is not None and self.state.closed_at is None)
    @rule(decision=st.sampled_from(["close", "keep_open", "keep_open", "keep_open"]),
          which=st.sampled_from(["none", "open"]))
    def caseworker_decides_the_open_task(self, decision: str, which: str) -> None:
        self.caseworker_decides("CW1", decision, which)

    @rule(caseworker=st.sampled_from(["CW1", "GONE", "STRANGER", ""]),
          decision=st.sampled_from(["close", "keep_open", "keep_open", "maybe"]),
          which=st.sampled_from(["none", "open", "stale", "other"]))
    def caseworker_decides(self, caseworker: str, decision: str, which: str) -> None:
        task = self.state.task
        task_id = {"none": None, "open": task.task_id if task else None,
                   "stale": f"TASK-{CASE}-{max(self.state.tasks_raised - 1, 0):03d}" if self.state.tasks_raised > 1
                   else f"TASK-{CASE}-999",
                   "other": "TASK-000000000000-001"}[which]
        request = LaaDecisionRequest(caseworker=caseworker, decision=decision, reason="checked", task_id=task_id)
        if self.state.closed_at is not None:
            # The review has ended; the rules would refuse it in any case.
            try:
                rules.check_decision(self.state, request)
            except Refused as refused:
                assert refused.code in ("certificate_closed", "unknown_decision", "missing_caseworker")
                return
            raise AssertionError("a decision on a closed certificate passed the check")
        expected = (decision in ("close", "keep_open") and task is not None
                    and (task_id is None or task_id == task.task_id)
                    and caseworker in CASEWORKERS and CASEWORKERS[caseworker].active)
        before = self.state.model_dump()
        try:
            rules.check_decision(self.state, request)
            decided_by = rules.authorize_decision(request, CASEWORKERS.get(caseworker))
        except Refused as refused:
            assert self.state.model_dump() == before
            assert not expected, f"decision {decision} by {caseworker!r} on {task_id} refused: {refused.code}"
            t = rules.refuse_decision(self.state, request, refused, self.now)
            assert [type(e) for e in t.effects] == [AuditRefusal]
            unchanged = {"history", "refusals"}
            assert t.state.model_dump(exclude=unchanged) == self.state.model_dump(exclude=unchanged), \
                "a refused decision changed the state"
            self.run(t, "refusal")
            return
        assert expected, f"decision {decision} by {caseworker!r} on {task_id} accepted (task {task})"
        assert task is not None
        if decision == "keep_open":
            self.anchor(self.now)
            since = self.reviews.get(task.task_id)
            if since is not None and task.kind == TaskKind.REVIEW:
                self.watch = None if self.billed_since(since) else since
        self.run(rules.apply_decision(self.state, request.model_copy(update={"caseworker": decided_by}), self.now),
                 f"decision:{decision}")
        self.after_message()

    @rule(login=st.sampled_from(LOGINS), new_contact=st.sampled_from(LOGINS))
    def contact_reassigned(self, login: str, new_contact: str) -> None:
        request = ReassignContactRequest(user_login_id=login, new_contact_login_id=new_contact)
        expected = self.state.closed_at is None and self.state.registration is not None \
            and may_reassign(login, new_contact)
        before = self.state.model_dump()
        try:
            rules.check_reassign(self.state, request)
            rules.authorize_reassign(self.state, request, USERS.get(login), USERS.get(new_contact))
        except Refused as refused:
            assert self.state.model_dump() == before
            assert not expected, f"{login} reassigning to {new_contact} refused: {refused.code}"
            return
        assert expected, f"{login} reassigning to {new_contact} accepted"
        open_before = self.state.notification
        self.run(rules.apply_reassign(self.state, request, self.now), "reassign")
        if open_before is not None:
            assert self.state.notification == open_before, "the open notification changed hands"
        self.after_message()

    @rule(contact=st.sampled_from(IMPORTED_CONTACTS), activity_days=st.one_of(st.none(), st.integers(0, 800)),
          granted_days=st.integers(0, 1500))
    def certificate_imported(self, contact: str, activity_days: int | None, granted_days: int) -> None:
        """`import certificates`: registers it (or updates it) and tells its review."""
        if self.registry_closed:
            return  # the registry keeps it closed; nothing is written or told
        registration = self.registration
        if registration is None:
            registration = Registration(provider_firm_id=FIRM, office_code="2L847Q", provider_contact_login=contact,
                                        granted_on=(self.now - timedelta(days=granted_days)).date())
        elif contact != self.imported_contact:
            registration = registration.model_copy(update={"provider_contact_login": contact})
        self.imported_contact = contact
        self.registration = registration
        self.registry_activity = None if activity_days is None else self.now - timedelta(days=activity_days)
        self.load()
        self.after_message()

    @rule(response=st.sampled_from(list(Response)), reported_days=st.integers(0, 1200), chance=st.integers(0, 2))
    def exercise_response_imported(self, response: Response, reported_days: int, chance: int) -> None:
        if self.exercise_claims or chance:
            return  # applied already: the record of what was applied is not rewritten
        self.exercise = ExerciseResponse(case_reference=CASE, response=response,
                                         reported_on=(self.now - timedelta(days=reported_days)).date())
        if self.state.closed_at is None:
            self.load()
            self.after_message()

    @rule(days=st.sampled_from([30, 90, 365, 608, 730]), response_days=st.sampled_from([7, 14]),
          return_days=st.sampled_from([15, 21]), cycles=st.sampled_from([1, 2, 3]),
          effective=st.one_of(st.just(timedelta(0)), st.integers(-23, 0).map(lambda h: timedelta(hours=h)),
                              st.integers(1, 400).map(lambda d: timedelta(days=d))))
    def policy_set(self, days: int, response_days: int, return_days: int, cycles: int, effective: timedelta) -> None:
        rules.check_policy_change(PolicyChange(
            inactivity_days=days, response_due=timedelta(days=response_days), return_after=timedelta(days=return_days),
            max_unanswered_cycles=cycles, effective_from=self.now + effective, reason="model", actor="ops"), self.now)
        version = max(p.version for p in self.policies) + 1
        policy = Policy(version=version, inactivity_days=days, response_due=timedelta(days=response_days),
                        return_after=timedelta(days=return_days), max_unanswered_cycles=cycles,
                        effective_from=self.now + effective)
        self.policies.append(policy)
        if self.state.closed_at is None:  # the roll-out tells every open certificate
            self.load()
            self.after_message()

    @rule(start=st.integers(-40 * 24, 60 * 24), hours=st.integers(1, 20 * 24))
    def outage_declared(self, start: int, hours: int) -> None:
        starts_at = self.now + timedelta(hours=start)
        rules.check_outage(OutageDeclaration(starts_at=starts_at, ends_at=starts_at + timedelta(hours=hours),
                                             reason="CCMS outage", actor="ops"))
        outage = Outage(outage_id=len(self.outages) + 1, starts_at=starts_at,
                        ends_at=starts_at + timedelta(hours=hours), reason="CCMS outage")
        self.outages.append(DeclaredOutage(outage, self.now))
        if self.state.closed_at is None:
            self.load()
            self.after_message()

    @rule(reason=st.sampled_from(["discharged", "", "  "]), timed=st.booleans(), chance=st.integers(0, 2))
    def closed_elsewhere(self, reason: str, timed: bool, chance: int) -> None:
        if self.state.closed_at is not None or chance:
            return  # the review has ended: the signal finds no running workflow
        request = CloseCertificateRequest(reason=reason, occurred_at=self.now if timed else None)
        try:
            t = rules.apply_close(self.state, request, self.now)
        except Refused as refused:
            assert not (reason.strip() and timed), f"close refused: {refused.code}"
            t = rules.refuse_close(self.state, request, refused, self.now)
            unchanged = {"history", "refusals"}
            assert t.state.model_dump(exclude=unchanged) == self.state.model_dump(exclude=unchanged)
            self.run(t, "refusal")
            return
        assert reason.strip() and timed
        self.run(t, "close")

    # --- what must hold after every step ------------------------------------------------------

    @invariant()
    def at_most_one_open_notification_and_task(self) -> None:
        if not self.state.loaded:
            return
        open_n = [i for i, r in self.db.notifications.items() if r["open"]]
        open_t = [i for i, r in self.db.tasks.items() if r["open"]]
        assert len(open_n) <= 1 and len(open_t) <= 1, f"open: {open_n} {open_t}"
        assert open_n == ([self.state.notification.notification_id] if self.state.notification else [])
        assert open_t == ([self.state.task.task_id] if self.state.task else [])
        assert len(self.db.notifications) == self.state.notifications_raised
        assert len(self.db.tasks) == self.state.tasks_raised
        assert len(self.db.recoupments) <= 1

    @invariant()
    def a_closed_certificate_never_changes(self) -> None:
        if self.state.closed_at is None:
            return
        core = self.state.model_dump(exclude={"history", "refusals"})
        if self.closed_core is None:
            self.closed_core = {"state": core, "notifications": len(self.db.notifications),
                                "tasks": len(self.db.tasks), "recoupments": list(self.db.recoupments)}
            assert self.state.notification is None and self.state.task is None
            return
        assert core == self.closed_core["state"], "a closed certificate's state changed"
        assert (len(self.db.notifications), len(self.db.tasks), self.db.recoupments) == (
            self.closed_core["notifications"], self.closed_core["tasks"], self.closed_core["recoupments"])

    @invariant()
    def the_deadline_is_the_last_activity_plus_the_policy_in_force(self) -> None:
        s = self.state
        if s.closed_at is not None or s.policy is None or not self.settled:
            return
        assert rules.inactivity_deadline(s) == self.due_at(), \
            f"deadline {rules.inactivity_deadline(s)}, the oracle's {self.due_at()} (clock from {self.clock})"
        in_force = self.policy_in_force(self.now)
        if self.now >= rules.policy_wake_at(CASE, in_force.effective_from):
            assert s.policy.version == in_force.version, f"version {s.policy.version}, in force {in_force.version}"
        else:  # taken up within the hour after its date
            earlier = {self.policy_in_force(self.now - rules.POLICY_SPREAD).version, in_force.version}
            earlier |= {p.version for p in self.policies
                        if self.now - rules.POLICY_SPREAD <= p.effective_from <= self.now}
            assert s.policy.version in earlier

    @invariant()
    def nothing_due_is_left_waiting(self) -> None:
        s = self.state
        if s.closed_at is not None or s.policy is None or not self.settled:
            return
        n = s.notification
        if n is not None:
            assert self.now < n.return_date, f"{n.notification_id} still open after its return date"
            assert n.overdue == (self.now >= n.due_date), f"{n.notification_id} overdue={n.overdue} at {self.now}"
            unclaimed = self.exercise is not None and self.exercise_claims == 0
            assert not unclaimed, "an exercise response waits while the provider is chased"
        blocked = n is not None or (s.task is not None and s.task.blocking)
        changing = any(p.effective_from <= self.now < rules.policy_wake_at(CASE, p.effective_from)
                       for p in self.policies)
        due = self.due_at()
        if not blocked and due is not None and due <= self.now and not self.in_outage(self.now) and not changing:
            raise AssertionError(f"due since {due}, nothing raised by {self.now}")
        if not blocked and self.watch is not None and not self.billed_since(self.watch) \
                and self.now >= financial_year_end(self.watch):
            raise AssertionError(f"follow-up for the response of {self.watch} due, not raised by {self.now}")


CertificateLife.TestCase.settings = settings(
    max_examples=300, stateful_step_count=30, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], print_blob=False)
TestCertificateLife = CertificateLife.TestCase
