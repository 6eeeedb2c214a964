"""`CertificateWorkflow`: one per certificate, for as long as it is open.

Thin by design: handlers record messages (signals) or validate them (updates); the run loop
asks `icr.rules` what to do, carries out the effects as idempotent activities, and waits
until the next deadline or message. Decisions live in the rules, SQL in the activities.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

with workflow.unsafe.imports_passed_through():
    from icr import rules
    from icr.models import (
        ActivityEvent,
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
        User,
    )
    from icr.search_attributes import SEARCH_ATTRIBUTES

# Activities are local: each step is a quick, idempotent PostgreSQL write, and running them
# inside the workflow task saves server round trips per certificate (a burst of thousands of
# notifications must go out in seconds). They retry without limit: a database outage delays
# a step, it never loses or repeats one.
STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=1))
RESULT_TYPES: dict[str, type] = {
    "record_activity_events": RecordActivityResult,
    "close_certificate": CloseCertificateResult,
}
DEFAULT_HISTORY_LIMIT = 5_000


def _refusal(refused: rules.Refused) -> ApplicationError:
    # Benign: a refusal is the rules' answer, not a fault (no error logs; no stack for the caller).
    return ApplicationError(refused.message, type=refused.code, non_retryable=True,
                            category=ApplicationErrorCategory.BENIGN)


@workflow.defn(name="CertificateWorkflow")
class CertificateWorkflow:
    @workflow.init
    def __init__(self, input: CertificateInput) -> None:
        self._state = input.state or rules.initial_state(input.case_reference)
        self._events: list[ActivityEvent] = list(input.pending_events)
        self._decisions: list[LaaDecisionRequest] = list(input.pending_decisions)
        # Every close signal, in order: a refused one is audited and the next one still counts.
        self._closes: list[CloseCertificateRequest] = list(input.pending_closes) or (
            [input.pending_close] if input.pending_close else [])
        self._reload = input.state is None or input.reload
        self._changed = False
        self._lock = asyncio.Lock()
        self._history_limit = input.history_limit or DEFAULT_HISTORY_LIMIT
        self._upserted: dict[str, Any] = {}

    # --- the run loop ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CertificateInput) -> CertificateStatus:
        try:
            rules.check_case_reference(input.case_reference)
            if workflow.info().workflow_id != rules.workflow_id_for(input.case_reference):
                raise rules.Refused("workflow_id_mismatch", f"workflow id must be "
                                    f"{rules.workflow_id_for(input.case_reference)!r}")
        except rules.Refused as refused:
            raise _refusal(refused) from None
        workflow.set_current_details(rules.current_details(self._state))
        while True:
            async with self._lock:
                await self._handle_messages()
                if self._state.closed_at is not None:
                    break
                step = rules.next_step(self._state, workflow.now())
                if isinstance(step, rules.Transition):
                    await self._apply(step)
                    continue
                if isinstance(step, rules.Reload):
                    self._reload = True
                    continue
            if self._should_continue_as_new():
                await self._continue_as_new(input)
            self._changed = False
            timeout = None if step.until is None else max(step.until - workflow.now(), timedelta(0))
            summary = None if step.until is None else rules.wait_summary(self._state, step.until)
            try:
                await workflow.wait_condition(self._has_work, timeout=timeout, timeout_summary=summary)
            except asyncio.TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return rules.status_of(self._state)

    def _has_work(self) -> bool:
        return bool(self._events or self._decisions or self._closes or self._reload or self._changed)

    async def _handle_messages(self) -> None:
        if self._reload:
            self._reload = False
            snapshot = await self._step("load_certificate", LoadCertificateInput(
                case_reference=self._state.case_reference, at=workflow.now()), CertificateSnapshot,
                "read the registry")
            await self._apply(rules.load(self._state, snapshot, workflow.now()))
        if self._events:
            events, self._events = self._events, []
            await self._record_events(events)
        while self._decisions and self._state.closed_at is None:
            await self._decision(self._decisions.pop(0))
        while self._closes and self._state.closed_at is None:
            close_request = self._closes.pop(0)
            try:
                transition = rules.apply_close(self._state, close_request, workflow.now())
            except rules.Refused as refused:
                workflow.logger.warning("close refused: %s", refused.message)
                transition = rules.refuse_close(self._state, close_request, refused, workflow.now())
            await self._apply(transition)

    async def _decision(self, request: LaaDecisionRequest) -> rules.Refused | None:
        """Take a decision by an active caseworker of the directory, under the name the
        directory has; otherwise audit its refusal and return it."""
        try:
            rules.check_decision(self._state, request)
            found: LoadCaseworkerResult = await self._step(
                "load_caseworker", LoadCaseworkerInput(caseworker_id=request.caseworker), LoadCaseworkerResult,
                "check the caseworker directory")
            decided_by = rules.authorize_decision(request, found.caseworker)
            transition = rules.apply_decision(self._state, request.model_copy(update={"caseworker": decided_by}),
                                              workflow.now())
        except rules.Refused as refused:
            workflow.logger.warning("decision refused: %s", refused.code)  # the audit log has the why
            await self._apply(rules.refuse_decision(self._state, request, refused, workflow.now()))
            return refused
        await self._apply(transition)
        return None

    async def _record_events(self, events: list[ActivityEvent]) -> None:
        now = workflow.now()
        accepted, refusals = rules.screen_events(self._state, events, now)
        for refusal in refusals:
            workflow.logger.warning("activity event refused (the audit log has the reason)")
            await self._run_effect(refusal)
        if not accepted:
            return
        step = RecordActivityEvents(case_reference=self._state.case_reference, events=accepted, received_at=now)
        result = await self._step(step.kind, step, RecordActivityResult, rules.step_summary(step))
        new_ids = set(result.new_event_ids)
        new: list[ActivityEvent] = []
        for event in accepted:
            if event.event_id in new_ids:
                new_ids.discard(event.event_id)
                new.append(event)
        if new:
            await self._apply(rules.apply_events(self._state, new, now))

    async def _apply(self, transition: rules.Transition) -> None:
        """Carry out the effects in order, then adopt the new state."""
        for effect in transition.effects:
            result = await self._run_effect(effect)
            if isinstance(effect, CloseCertificate) and isinstance(result, CloseCertificateResult) \
                    and result.recouped is not None:
                transition.state.recoupments.append(
                    Recoupment(recoupment_id=effect.recoupment_id, amount=result.recouped, at=effect.at))
        self._state = transition.state
        self._changed = True
        self._upsert_search_attributes()
        workflow.set_current_details(rules.current_details(self._state))

    async def _run_effect(self, effect: Effect) -> Any:
        return await self._step(effect.kind, effect, RESULT_TYPES.get(effect.kind), rules.step_summary(effect))

    async def _step(self, name: str, arg: Any, result_type: type | None, summary: str) -> Any:
        # The summary names the step in the Web UI's timeline; never personal data.
        return await workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY, summary=summary)

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
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._history_limit

    async def _continue_as_new(self, input: CertificateInput) -> None:
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._lock.locked())
        workflow.continue_as_new(CertificateInput(
            case_reference=self._state.case_reference, state=self._state,
            pending_events=self._events, pending_decisions=self._decisions, pending_closes=self._closes,
            reload=self._reload, history_limit=input.history_limit))

    # --- messages (the public contract) ----------------------------------------------------

    @workflow.signal(name="record_activity")
    def record_activity(self, event: ActivityEvent) -> None:
        self._events.append(event)

    @workflow.signal(name="laa_decision")
    def laa_decision(self, request: LaaDecisionRequest) -> None:
        self._decisions.append(request)

    @workflow.signal(name="close_certificate")
    def close_certificate(self, request: CloseCertificateRequest) -> None:
        self._closes.append(request)

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
        users = await self._users([request.user_login_id])
        async with self._lock:
            try:
                response = rules.check_response(self._state, request, workflow.now())
                rules.authorize_response(self._state, users.get(request.user_login_id), request.user_login_id)
            except rules.Refused as refused:
                raise _refusal(refused) from None
            assert self._state.notification is not None
            notification_id = self._state.notification.notification_id
            await self._apply(rules.apply_response(self._state, request, workflow.now()))
        return RespondResult(notification_id=notification_id, response=response,
                             outcome=rules.response_outcome(response), stage=self._state.stage)

    @respond.validator
    def _validate_respond(self, request: RespondRequest) -> None:
        try:
            rules.check_response(self._state, request, workflow.now())
        except rules.Refused as refused:
            raise _refusal(refused) from None

    @workflow.update(name="decide")
    async def decide(self, request: LaaDecisionRequest) -> DecideResult:
        """The `laa_decision` signal as an update: a refusal comes back to the caseworker (and,
        once past the validator, is audited like the signal's)."""
        async with self._lock:
            task = self._state.task
            refused = await self._decision(request)
            if refused is not None:
                raise _refusal(refused)
            assert task is not None
        return DecideResult(task_id=task.task_id, decision=Decision(request.decision), stage=self._state.stage)

    @decide.validator
    def _validate_decide(self, request: LaaDecisionRequest) -> None:
        try:
            rules.check_decision(self._state, request)
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
            await self._apply(rules.apply_reassign(self._state, request, workflow.now()))
        return ReassignContactResult(case_reference=self._state.case_reference,
                                     provider_contact_login=request.new_contact_login_id)

    @reassign_contact.validator
    def _validate_reassign(self, request: ReassignContactRequest) -> None:
        try:
            rules.check_reassign(self._state, request)
        except rules.Refused as refused:
            raise _refusal(refused) from None

    async def _users(self, login_ids: list[str]) -> dict[str, User]:
        result: LoadUsersResult = await self._step("load_users", LoadUsersInput(login_ids=login_ids),
                                                   LoadUsersResult, "read the user directory")
        return {u.login_id: u for u in result.users}
