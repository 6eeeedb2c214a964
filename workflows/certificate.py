"""`CertificateWorkflow`: one per certificate, for as long as it is open.

Thin by design: handlers record messages (signals) or validate them (updates); the run loop
asks `icr.domain.rules` what to do, carries out the effects as idempotent activities, and waits
until the next deadline or message. Decisions live in the rules, SQL in the activities.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory, FailureError
from temporalio.exceptions import TimeoutError as StepTimeout
from temporalio.worker import (
    HandleSignalInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from icr.domain import rules
    from icr.domain.models import (
        INVALID_DATA,
        INVALID_START,
        UNDECODABLE_MESSAGE,
        UNDECODABLE_START,
        ActivityEvent,
        CarriedState,
        CertificateInput,
        CertificateSnapshot,
        CertificateStatus,
        CloseCertificate,
        CloseCertificateRequest,
        CloseCertificateResult,
        DecideResult,
        Decision,
        Effect,
        LaaDecisionRequest,
        LoadCaseworkerInput,
        LoadCaseworkerResult,
        LoadCertificateInput,
        LoadUsersInput,
        LoadUsersResult,
        ReassignContactRequest,
        ReassignContactResult,
        RecordActivityEvents,
        RecordActivityResult,
        Recoupment,
        RespondRequest,
        RespondResult,
        Undecodable,
        User,
    )
    from workflows.clock import TaskClock
    from workflows.search_attributes import SEARCH_ATTRIBUTES
    from workflows.wake import WakeTimer

# Each step is a local or a regular activity by what a second run of it would do; the choice is
# made, with its reason, where the step is called (`local=True`).
# - A local activity runs inside the workflow task, with no server round trip of its own. If the
#   worker dies before that task completes, the retried task runs it again, with a new
#   workflow.now() and perhaps newer messages, and adopts the second run's result. So only a
#   step that reads, or writes idempotently and returns what the database holds (whichever run
#   wrote it), is local: the workflow then adopts the database's content either way.
# - A regular activity runs only after the workflow task that scheduled it has completed: its
#   input (ids, dates, assignee, decision, amounts) is in the history before it writes, and
#   every retry writes that same input. Every step whose data the database must hold exactly as
#   the workflow adopted it (notifications, tasks, closes, recoupments, audit) is regular.
# A local step keeps its workflow task open while it retries, adding a few history events every
# few seconds: after LOCAL_ATTEMPTS failures (some 15 s: a database outage) it is run again as
# a regular activity, whose retries add nothing to the history however long the outage lasts.
# (Counted in attempts, not time: the SDK measures a local step's time by the worker's clock.)
# The clock guard (workflows/clock.py) allows for how the SDK replays a local step; a worker
# needs a cache of at least one certificate (ICR_MAX_CACHED_WORKFLOWS) for local steps to finish.
LOCAL_ATTEMPTS = 5
STEP_TIMEOUT = timedelta(seconds=30)
# The engine's own steps retry whatever fails: their data comes from the registry, and once
# it is put right they go through.
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=1))
# A step carrying a message gives up on a value the database will never store: the message is
# refused and audited instead of wedging the certificate.
MESSAGE_STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                 maximum_interval=timedelta(minutes=1),
                                 non_retryable_error_types=[INVALID_DATA])
RESULT_TYPES: dict[str, type] = {
    "record_activity_events": RecordActivityResult,
    "close_certificate": CloseCertificateResult,
}
# A workflow task that misses the sticky cache (and every task with the cache off) replays
# the run's whole history, at about 0.45 ms of worker CPU per history event (benchmark, no
# cache: an event cost 0.16 s of worker CPU on a new certificate and 1.17 s on one with 1,113
# history events). Short runs keep every such task cheap;
# continue-as-new costs about one workflow task per 500 events (some 40 activity events).
DEFAULT_HISTORY_LIMIT = 500
# Messages waiting while a step runs (a database outage can hold one for as long as it lasts)
# are capped, so the state carried across continue-as-new stays small: beyond the cap they
# are dropped and audited. Events are recorded in batches of at most EVENTS_PER_STEP.
MAX_PENDING_EVENTS = 1_000
MAX_PENDING_DECISIONS = 100
EVENTS_PER_STEP = 500
# How many arguments each signal takes: a signal sent with another number would fail the
# handler's call, and with it every workflow task of the certificate.
SIGNAL_ARGUMENTS = {"record_activity": 1, "laa_decision": 1, "close_certificate": 1,
                    "registration_updated": 0, "policy_changed": 0, "outages_changed": 0}


def _refusal(refused: rules.Refused) -> ApplicationError:
    # Benign: a refusal is the rules' answer, not a fault (no error logs; no stack for the caller).
    return ApplicationError(refused.message, type=refused.code, non_retryable=True,
                            category=ApplicationErrorCategory.BENIGN)


def _refuse_undecodable(message: object) -> None:
    """An update validator's first check: a payload the worker could not decode is refused."""
    if isinstance(message, Undecodable):
        raise _refusal(rules.Refused(UNDECODABLE_MESSAGE, f"the message could not be decoded: {message.reason}"))


class UndecodableCarriedState(RuntimeError):
    """Not a refusal: the engine's own continue-as-new input did not decode (a key no longer
    listed). The workflow task fails, and is retried, until the key is listed again."""


def _invalid_data(err: FailureError) -> str | None:
    """The database's refusal of a step's data, or None for any other failure. (A regular
    activity's failure reaches the workflow as an ActivityError wrapping the activity's error,
    a local activity's as that error itself.)"""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type == INVALID_DATA:
        return cause.message
    return None


@workflow.defn(name="CertificateWorkflow")
class CertificateWorkflow:
    # Continue as new after this many history events. A class attribute, not an input: only
    # code registered on a worker (a test's subclass) can change it, never a caller.
    history_limit: int = DEFAULT_HISTORY_LIMIT
    # How often a local step may fail before it runs as a regular activity (a test's subclass
    # lowers it, to see an outage outlast it in real time).
    local_attempts: int = LOCAL_ATTEMPTS

    @workflow.init
    def __init__(self, input: CertificateInput | None = None, *extra: Any) -> None:
        # Nothing here may raise on bad input: that would fail every workflow task, for good.
        # A start the workflow cannot use is refused by `run`, ending the workflow. (`extra`:
        # a start with more arguments must reach this method too.)
        undecodable = input if isinstance(input, Undecodable) else None
        if undecodable is not None:
            if self._continued_by_the_engine():
                raise UndecodableCarriedState(f"the state carried from the previous run could not be decoded: "
                                              f"{undecodable.reason}")
            input = None
        if not isinstance(input, CertificateInput):
            input = CertificateInput.model_validate(input)
        self._start_refused: rules.Refused | None = None
        try:
            if undecodable is not None:
                raise rules.Refused(UNDECODABLE_START, f"the start input could not be decoded: {undecodable.reason}")
            if extra:
                raise rules.Refused(INVALID_START, f"a start takes one input, the case reference; "
                                                   f"{1 + len(extra)} were given")
            case_reference = rules.check_case_reference(input.case_reference)
            if workflow.info().workflow_id != rules.workflow_id_for(case_reference):
                raise rules.Refused("workflow_id_mismatch", f"workflow id must be "
                                    f"{rules.workflow_id_for(case_reference)!r}")
            carried = self._carried(input, case_reference)
        except rules.Refused as refused:
            self._start_refused = refused
            case_reference, carried = "", None
        self._state = carried.state if carried else rules.initial_state(case_reference)
        self._events: list[ActivityEvent] = list(carried.pending_events) if carried else []
        self._decisions: list[LaaDecisionRequest] = list(carried.pending_decisions) if carried else []
        # Every close signal, in order: a refused one is audited and the next one still counts.
        self._closes: list[CloseCertificateRequest] = list(carried.pending_closes) if carried else []
        self._reload = carried is None or carried.reload
        self._dropped_events = carried.dropped_events if carried else 0
        self._dropped_decisions = carried.dropped_decisions if carried else 0
        self._dropped_undecodable = carried.dropped_undecodable if carried else 0
        self._undecodable_reason = carried.undecodable_reason if carried else ""
        # Responses accepted and not yet applied: the deadlines wait for them (see `respond`).
        self._answering = 0
        self._changed = False
        self._lock = asyncio.Lock()
        self._upserted: dict[str, Any] = {}
        self._clock = TaskClock()
        self._wake = WakeTimer()

    @staticmethod
    def _continued_by_the_engine() -> bool:
        # Only a continue-as-new, a retry or a cron run starts with `continued_run_id` set, and
        # only the workflow itself can continue as new. A caller could ask for a retry policy
        # (a later attempt) or a cron schedule to have their own input handed to a second run:
        # neither is the engine's, so a run is the engine's continuation only at attempt 1, no cron.
        info = workflow.info()
        return info.continued_run_id is not None and info.attempt == 1 and not info.cron_schedule

    @classmethod
    def _carried(cls, input: CertificateInput, case_reference: str) -> CarriedState | None:
        """The state the previous run handed over, accepted only from the engine's own
        continue-as-new: outside callers pass the case reference and nothing else."""
        if input.carried is None:
            return None
        if not cls._continued_by_the_engine():
            workflow.logger.warning("carried state from outside ignored; the review starts from the registry")
            return None
        try:
            carried = CarriedState.model_validate(input.carried)
        except ValidationError as err:
            raise rules.Refused("invalid_carried_state",
                                f"the state carried from the previous run does not decode: {err}") from None
        if carried.state.case_reference != case_reference:
            raise rules.Refused("carried_state_mismatch",
                                f"the carried state names certificate {carried.state.case_reference!r}, "
                                f"not {case_reference!r}")
        return carried

    # --- the run loop ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CertificateInput | None = None, *extra: Any) -> CertificateStatus:
        # `input` is read by __init__; a default, so that a start with no input at all is
        # refused like any other unusable start.
        if self._start_refused is not None:
            # A non-retryable failure ends the workflow with a clear reason; the same error in
            # the decoder would instead fail every workflow task of this id, for good.
            raise _refusal(self._start_refused)
        workflow.set_current_details(rules.current_details(self._state))
        while True:
            if self._answering:
                # A response lands on the notification it was accepted against, before anything
                # that arrived or fell due after it (see `respond`): until then messages wait.
                await workflow.wait_condition(lambda: not self._answering)
            async with self._lock:
                await self._handle_messages()
                if self._state.closed_at is not None:
                    break
                # Accepted while this iteration held the lock: no deadline is acted on before it.
                step = None if self._answering else rules.next_step(self._state, self._now())
                if isinstance(step, rules.Transition):
                    await self._apply(step)
                    continue
                if isinstance(step, rules.Reload):
                    self._reload = True
                    continue
            if self._should_continue_as_new():
                await self._continue_as_new()
            if step is None:
                continue  # to wait for the response
            self._changed = False
            if step.until is not None:
                self._wake.arm(step.until, self._now(), rules.wait_summary(self._state, step.until))
            await workflow.wait_condition(lambda: self._has_work() or self._wake.rang())
            self._wake.consume()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return rules.status_of(self._state)

    def _now(self) -> datetime:
        """This workflow task's time; every decision reads it here (see workflows/clock.py).
        Update validators read workflow.now() itself: they only run in a task of their own."""
        return self._clock.read(workflow.now(), workflow.info().get_current_history_length(),
                                workflow.unsafe.is_replaying())

    def _has_work(self) -> bool:
        return bool(self._events or self._decisions or self._closes or self._reload or self._changed
                    or self._dropped_events or self._dropped_decisions or self._dropped_undecodable)

    async def _handle_messages(self) -> None:
        if self._reload:
            self._reload = False
            # Local: a read.
            snapshot = await self._step("load_certificate", LoadCertificateInput(
                case_reference=self._state.case_reference, at=self._now()), CertificateSnapshot,
                "read the registry", local=True)
            await self._apply(rules.load(self._state, snapshot, self._now()))
        if self._dropped_events or self._dropped_decisions:
            dropped_events, dropped_decisions = self._dropped_events, self._dropped_decisions
            self._dropped_events = self._dropped_decisions = 0
            await self._apply(rules.refuse_message(
                self._state, action="messages_dropped", actor="engine",
                reason=f"{dropped_events} activity event(s) and {dropped_decisions} decision(s) arrived "
                       f"while the queue was full ({MAX_PENDING_EVENTS} events, {MAX_PENDING_DECISIONS} "
                       "decisions)",
                detail={"events": str(dropped_events), "decisions": str(dropped_decisions)}, now=self._now()))
        if self._dropped_undecodable:
            dropped, reason = self._dropped_undecodable, self._undecodable_reason
            self._dropped_undecodable, self._undecodable_reason = 0, ""
            await self._apply(rules.refuse_message(
                self._state, action="messages_undecodable", actor="engine",
                reason=f"{dropped} message(s) whose payload could not be decoded were dropped; the last: {reason}",
                detail={"messages": str(dropped), "last_reason": reason}, now=self._now()))
        # A flood of events is taken in batches, continuing as new between them once the run
        # is long (the rest is carried): draining it all in one run would replay an ever longer
        # history on every task, fall behind, and overflow the queue.
        while self._events and not self._should_continue_as_new():
            batch, self._events = self._events[:EVENTS_PER_STEP], self._events[EVENTS_PER_STEP:]
            await self._record_events(batch)
        while self._decisions and self._state.closed_at is None:
            await self._decision(self._decisions.pop(0))
        while self._closes and self._state.closed_at is None:
            request = self._closes.pop(0)
            try:
                transition = rules.apply_close(self._state, request, self._now())
            except rules.Refused as refused:
                workflow.logger.warning("close refused: %s", refused.code)  # the audit log has the why
                await self._apply(rules.refuse_close(self._state, request, refused, self._now()))
                continue
            await self._apply_message(transition, action="close_refused", actor="close_certificate",
                                      detail={"close_reason": request.reason})

    async def _decision(self, request: LaaDecisionRequest) -> rules.Refused | None:
        """Take a decision by an active caseworker of the directory, under the name the
        directory has; otherwise audit its refusal and return it."""
        try:
            rules.check_decision(self._state, request)
            # Local: a read.
            found: LoadCaseworkerResult = await self._step(
                "load_caseworker", LoadCaseworkerInput(caseworker_id=request.caseworker), LoadCaseworkerResult,
                "check the caseworker directory", local=True)
            decided_by = rules.authorize_decision(request, found.caseworker)
            transition = rules.apply_decision(self._state, request.model_copy(update={"caseworker": decided_by}),
                                              self._now())
        except rules.Refused as refused:
            workflow.logger.warning("decision refused: %s", refused.code)  # the audit log has the why
            await self._apply(rules.refuse_decision(self._state, request, refused, self._now()))
            return refused
        failed = await self._apply_message(transition, action="decision_refused", actor=request.caseworker,
                                           detail={"decision": request.decision})
        return None if failed is None else rules.Refused(INVALID_DATA, failed)

    async def _record_events(self, events: list[ActivityEvent]) -> None:
        now = self._now()
        accepted, refusals = rules.screen_events(self._state, events, now)
        for refusal in refusals:
            workflow.logger.warning("activity event refused (the audit log has the reason)")
            await self._run_effect(refusal)
        if not accepted:
            return
        step = RecordActivityEvents(case_reference=self._state.case_reference, events=accepted, received_at=now)
        # Local: the ledger write is idempotent (keyed by event id) and returns the ledger's row
        # for every event, also one a run whose workflow task was lost wrote with another
        # `received_at`: the workflow adopts what the ledger holds.
        result = await self._step(step.kind, step, RecordActivityResult, rules.step_summary(step), local=True)
        for refused in result.refused:
            await self._apply(rules.refuse_message(
                self._state, action="activity_refused", actor="activity source", reason=refused.reason,
                detail={"event_id": refused.event_id}, now=now))
        # Every row of the step, also those an attempt that never completed wrote: the rules
        # apply each once (the state's watermark), so none is lost and none counts twice.
        if result.events:
            await self._apply(rules.apply_ledger_events(self._state, result.events, now))

    async def _apply(self, transition: rules.Transition, *, for_message: bool = False) -> None:
        """Carry out the effects in order, then adopt the new state."""
        retry = MESSAGE_STEP_RETRY if for_message else STEP_RETRY
        for effect in transition.effects:
            result = await self._step(effect.kind, effect, RESULT_TYPES.get(effect.kind),
                                      rules.step_summary(effect), retry)
            if isinstance(effect, CloseCertificate) and isinstance(result, CloseCertificateResult) \
                    and result.recouped is not None:
                transition.state.recoupments.append(
                    Recoupment(recoupment_id=effect.recoupment_id, amount=result.recouped, at=effect.at))
        self._state = transition.state
        self._changed = True
        self._upsert_search_attributes()
        workflow.set_current_details(rules.current_details(self._state))

    async def _apply_message(self, transition: rules.Transition, *, action: str, actor: str,
                             detail: dict[str, str]) -> str | None:
        """Apply a message's transition; if the database refuses its data (which the rules'
        checks should make impossible), refuse the message instead: audited once, dropped,
        the state unchanged. Returns the refusal's reason, None when applied."""
        try:
            await self._apply(transition, for_message=True)
            return None
        except ActivityError as err:
            reason = _invalid_data(err)
            if reason is None:
                raise
        workflow.logger.warning("%s (the audit log has the reason)", action)
        await self._apply(rules.refuse_message(self._state, action=action, actor=actor, reason=reason,
                                               detail=detail, now=self._now()))
        return reason

    async def _run_effect(self, effect: Effect) -> Any:
        return await self._step(effect.kind, effect, RESULT_TYPES.get(effect.kind), rules.step_summary(effect))

    async def _step(self, name: str, arg: Any, result_type: type | None, summary: str,
                    retry: RetryPolicy = STEP_RETRY, *, local: bool = False) -> Any:
        # The summary names the step in the Web UI's timeline; never personal data.
        if local:
            try:
                return await workflow.execute_local_activity(
                    name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=dataclasses.replace(retry, maximum_attempts=self.local_attempts), summary=summary)
            except (ActivityError, ApplicationError, StepTimeout) as err:
                # A local step's last failure arrives as itself (ApplicationError, or a timeout
                # when an attempt hung), not wrapped in an ActivityError.
                if _invalid_data(err) is not None:
                    raise
                workflow.logger.warning("local step %s failed %d times: run as a regular activity", name,
                                        self.local_attempts)
        return await workflow.execute_activity(
            name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT, retry_policy=retry,
            summary=summary)

    def _upsert_search_attributes(self) -> None:
        wanted = rules.search_attributes(self._state)
        updates: list[SearchAttributeUpdate[Any]] = []
        for name, value in wanted.items():
            if name in self._upserted and self._upserted[name] == value:
                continue
            key: SearchAttributeKey[Any] = SEARCH_ATTRIBUTES[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)
            self._upserted = wanted

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self.history_limit

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._lock.locked())
        workflow.continue_as_new(CertificateInput(
            case_reference=self._state.case_reference,
            carried=CarriedState(state=self._state, pending_events=self._events,
                                 pending_decisions=self._decisions, pending_closes=self._closes,
                                 reload=self._reload, dropped_events=self._dropped_events,
                                 dropped_decisions=self._dropped_decisions,
                                 dropped_undecodable=self._dropped_undecodable,
                                 undecodable_reason=self._undecodable_reason)))

    # --- messages (the public contract) ----------------------------------------------------

    def _undecodable(self, message: object) -> bool:
        """A message whose payload the worker could not decode: dropped, and counted for the
        audit log (as an over-full queue's are), the certificate carrying on."""
        if not isinstance(message, Undecodable):
            return False
        self._dropped_undecodable += 1
        self._undecodable_reason = message.reason
        return True

    @workflow.signal(name="record_activity")
    def record_activity(self, event: ActivityEvent) -> None:
        if self._undecodable(event):
            return
        if len(self._events) >= MAX_PENDING_EVENTS:
            self._dropped_events += 1
            return
        self._events.append(rules.bound_event(event))

    @workflow.signal(name="laa_decision")
    def laa_decision(self, request: LaaDecisionRequest) -> None:
        if self._undecodable(request):
            return
        if len(self._decisions) >= MAX_PENDING_DECISIONS:
            self._dropped_decisions += 1
            return
        self._decisions.append(rules.bound_decision(request))

    @workflow.signal(name="close_certificate")
    def close_certificate(self, request: CloseCertificateRequest) -> None:
        if self._undecodable(request):
            return
        if len(self._closes) >= MAX_PENDING_DECISIONS:
            self._dropped_decisions += 1
            return
        self._closes.append(rules.bound_close(request))

    @workflow.signal(name="registration_updated")
    def registration_updated(self) -> None:
        """The registry changed (import, exercise responses): read it again."""
        self._reload = True

    @workflow.signal(name="policy_changed")
    def policy_changed(self) -> None:
        """A new inactivity policy version was added: read it again and recompute."""
        self._reload = True

    @workflow.signal(name="outages_changed")
    def outages_changed(self) -> None:
        """An outage was declared: read the outages again and move the response deadlines."""
        self._reload = True

    @workflow.query(name="status")
    def status(self) -> CertificateStatus:
        return rules.status_of(self._state)

    @workflow.update(name="respond")
    async def respond(self, request: RespondRequest) -> RespondResult:
        # Pinned to the notification and the time the validator accepted it against: the
        # validator ran just before, in this same task, so up to the first `await` the state
        # and the clock are the ones it saw. Until the response is applied the run loop acts
        # on no deadline, so a return date passing during the user lookup (a worker backlog,
        # a database outage) neither returns nor resends the notification first.
        assert self._state.notification is not None  # checked by the validator
        notification_id, accepted_at = self._state.notification.notification_id, self._now()
        self._answering += 1
        try:
            users = await self._users([request.user_login_id])
            async with self._lock:
                try:
                    if self._state.notification is None or self._state.notification.notification_id != notification_id:
                        # Closed meanwhile by something that does not wait: activity, a decision,
                        # a close, another response.
                        raise rules.Refused("notification_closed", f"notification {notification_id} was closed "
                                            "before this response could be recorded; nothing was recorded")
                    response = rules.check_response(self._state, request, accepted_at)
                    rules.authorize_response(self._state, users.get(request.user_login_id), request.user_login_id)
                except rules.Refused as refused:
                    raise _refusal(refused) from None
                failed = await self._apply_message(
                    rules.apply_response(self._state, request, accepted_at), action="response_refused",
                    actor=request.user_login_id, detail={"response": request.response})
                if failed is not None:
                    raise ApplicationError(failed, type=INVALID_DATA, non_retryable=True)
        finally:
            self._answering -= 1
        return RespondResult(notification_id=notification_id, response=response,
                             outcome=rules.response_outcome(response), stage=self._state.stage)

    @respond.validator
    def _validate_respond(self, request: RespondRequest) -> None:
        _refuse_undecodable(request)
        try:
            rules.check_response(self._state, request, workflow.now())
        except rules.Refused as refused:
            raise _refusal(refused) from None

    @workflow.update(name="decide")
    async def decide(self, request: LaaDecisionRequest) -> DecideResult:
        """The `laa_decision` signal as an update: a refusal comes back to the caseworker (and,
        once past the validator, is audited like the signal's)."""
        request = rules.bound_decision(request)
        async with self._lock:
            task = self._state.task
            refused = await self._decision(request)
            if refused is not None:
                raise _refusal(refused)
            assert task is not None
        return DecideResult(task_id=task.task_id, decision=Decision(request.decision), stage=self._state.stage)

    @decide.validator
    def _validate_decide(self, request: LaaDecisionRequest) -> None:
        _refuse_undecodable(request)
        try:
            rules.check_decision(self._state, rules.bound_decision(request))
        except rules.Refused as refused:
            raise _refusal(refused) from None

    @workflow.update(name="reassign_contact")
    async def reassign_contact(self, request: ReassignContactRequest) -> ReassignContactResult:
        users = await self._users([request.user_login_id, request.new_contact_login_id])
        async with self._lock:
            try:
                rules.check_reassign(self._state, request)
                rules.authorize_reassign(self._state, request, users.get(request.user_login_id),
                                         users.get(request.new_contact_login_id))
            except rules.Refused as refused:
                raise _refusal(refused) from None
            failed = await self._apply_message(
                rules.apply_reassign(self._state, request, self._now()), action="reassignment_refused",
                actor=request.user_login_id, detail={"new_contact_login_id": request.new_contact_login_id})
            if failed is not None:
                raise ApplicationError(failed, type=INVALID_DATA, non_retryable=True)
        return ReassignContactResult(case_reference=self._state.case_reference,
                                     provider_contact_login=request.new_contact_login_id)

    @reassign_contact.validator
    def _validate_reassign(self, request: ReassignContactRequest) -> None:
        _refuse_undecodable(request)
        try:
            rules.check_reassign(self._state, request)
        except rules.Refused as refused:
            raise _refusal(refused) from None

    async def _users(self, login_ids: list[str]) -> dict[str, User]:
        # Local: a read.
        result: LoadUsersResult = await self._step("load_users", LoadUsersInput(login_ids=login_ids),
                                                   LoadUsersResult, "read the user directory", local=True)
        return {u.login_id: u for u in result.users}


class MessageArguments(Interceptor):
    """On every worker: a signal of CertificateWorkflow sent with another number of arguments
    than it takes (SIGNAL_ARGUMENTS) is dropped and counted, instead of failing the handler's
    call and with it every workflow task of the certificate."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _MessageArgumentsInbound


class _MessageArgumentsInbound(WorkflowInboundInterceptor):
    async def handle_signal(self, input: HandleSignalInput) -> None:
        expected = SIGNAL_ARGUMENTS.get(input.signal)
        if expected is None or len(input.args) == expected or workflow.info().workflow_type != "CertificateWorkflow":
            return await super().handle_signal(input)
        if expected == 0:  # a notice that carries nothing: what was sent is ignored
            return await super().handle_signal(dataclasses.replace(input, args=[]))
        reason = f"{input.signal} takes {expected} argument(s); {len(input.args)} were sent"
        return await super().handle_signal(dataclasses.replace(input, args=[Undecodable(reason)]))
