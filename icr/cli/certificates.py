"""One certificate's review and the lists of them: record-activity, respond, decide, reassign,
close, status, list, queue."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from icr.adapters.temporal.client import (
    CertificateClosed,
    CertificateListing,
    MessageRefused,
    list_query,
    queue_query,
)
from icr.cli.common import (
    EXIT_USAGE,
    CliError,
    add_actor_argument,
    case_reference_arg,
    command,
    firm_arg,
    message_arg,
    now_utc,
    positive_int_arg,
    print_json,
    response_arg,
    status_or_error,
    timestamp_arg,
    ui_link,
    uk_or_dash,
    waited,
)
from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    ActivityKind,
    CloseCertificateRequest,
    IcrStage,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
    Response,
    TaskKind,
)
from icr.runtime.engine import Runtime


async def cmd_record_activity(rt: Runtime, args: argparse.Namespace) -> int:
    event = ActivityEvent(event_id=args.event_id, kind=args.kind, occurred_at=args.occurred_at or now_utc(),
                          source=args.source or args.actor)
    try:
        rules.check_event(event, now_utc())
    except rules.Refused as refused:
        raise CliError(refused.message, EXIT_USAGE) from None
    recorded = [r for r in await rt.store.ledger_of(args.case_reference) if r.event_id == event.event_id]
    if recorded:
        print(f"event {event.event_id} was already recorded for {args.case_reference} ({recorded[0].kind} "
              f"at {recorded[0].occurred_at.isoformat()}); it counts once, nothing changed")
        return 0
    try:
        await rt.certificates.record_activity(args.case_reference, event)
    except CertificateClosed as err:
        raise CliError(f"{err}; the event was not recorded") from None
    print(f"recorded {event.kind} {event.event_id} for {args.case_reference}")
    return 0


async def cmd_respond(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    await status_or_error(certificates, args.case_reference)  # a clear error for an unknown certificate
    request = RespondRequest(user_login_id=args.user, response=args.response, message=args.message)
    try:
        result = await certificates.respond(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"response refused: {err}") from None
    print_json(result.model_dump(mode="json"))
    return 0


async def cmd_decide(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    status = await status_or_error(certificates, args.case_reference)  # a clear error for an unknown certificate
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"decision refused: certificate {args.case_reference} is closed [certificate_closed]")
    # Names the task shown (unless --task-id says which), so a task that changed meanwhile is
    # not decided by mistake.
    task_id = args.task_id or (status.open_task.task_id if status.open_task else None)
    request = LaaDecisionRequest(caseworker=args.caseworker, decision=args.decision, reason=args.reason,
                                 task_id=task_id)
    try:
        result = await certificates.decide(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"decision refused: {err}") from None
    print_json(result.model_dump(mode="json"))
    return 0


async def cmd_reassign(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    await status_or_error(certificates, args.case_reference)  # a clear error for an unknown certificate
    request = ReassignContactRequest(user_login_id=args.user, new_contact_login_id=args.new_contact)
    try:
        result = await certificates.reassign(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"reassignment refused: {err}") from None
    print_json(result.model_dump(mode="json"))
    return 0


async def cmd_close(rt: Runtime, args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise CliError("--reason must not be empty", EXIT_USAGE)
    certificates = rt.certificates
    status = await status_or_error(certificates, args.case_reference)
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"certificate {args.case_reference} is already closed")
    await certificates.close(args.case_reference,
                             CloseCertificateRequest(reason=args.reason, occurred_at=args.occurred_at or now_utc(),
                                                     system=f"operator {args.actor}"))
    print(f"close sent for {args.case_reference}")
    return 0


async def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    status = await status_or_error(rt.certificates, args.case_reference)
    print(status.model_dump_json(indent=2))
    return 0


_STAGE_ORDER = {stage.value: i for i, stage in enumerate(IcrStage)}


_LAST = datetime.max.replace(tzinfo=UTC)


def _list_order(c: CertificateListing) -> tuple[int, datetime, datetime, str]:
    """By stage, then the soonest response due date, then the soonest inactivity deadline."""
    return (_STAGE_ORDER.get(c.stage or "", len(_STAGE_ORDER)), c.response_due_date or _LAST,
            c.inactivity_deadline or _LAST, c.case_reference)


async def cmd_list(rt: Runtime, args: argparse.Namespace) -> int:
    query = list_query(args.stage, args.firm)
    print(f"# filter: {query}")
    listed = sorted([c async for c in rt.certificates.list_certificates(args.stage, args.firm, limit=args.limit)],
                    key=_list_order)
    if listed:
        print(f"{'certificate':<14} {'stage':<17} {'firm':<8} {'open task':<21} {'cycle':>5}  "
              f"{'response due (UK)':<17}  {'inactivity deadline (UK)'}")
    for c in listed:
        print(f"{c.case_reference:<14} {c.stage or '?':<17} {c.provider_firm_id or '-':<8} "
              f"{c.open_task_kind or '-':<21} {c.notification_cycle if c.notification_cycle else '-':>5}  "
              f"{uk_or_dash(c.response_due_date):<17}  {uk_or_dash(c.inactivity_deadline)}")
    print(f"{len(listed)} certificate(s)")
    return 0


async def cmd_queue(rt: Runtime, args: argparse.Namespace) -> int:
    # From the engine's own task table, complete at any size (visibility is only eventually
    # consistent and a list of it is cut off at its limit); the filter is the same list in the
    # Web UI.
    query = queue_query(args.kind, args.firm)
    queue = await rt.store.open_tasks(args.kind, args.firm, limit=args.limit)
    print(f"# filter: {query}")
    link = ui_link(rt, query)
    if link:
        print(f"# Web UI: {link}")
    now = now_utc()
    if queue.tasks:
        print(f"{'waiting':>8}  {'certificate':<14} {'firm':<8} {'task':<22} {'kind':<21} asks")
    for t in queue.tasks:
        print(f"{waited(t.raised_at, now):>8}  {t.case_reference:<14} {t.provider_firm_id or '-':<8} "
              f"{t.task_id:<22} {t.kind:<21} {t.detail}")
    print(f"{len(queue.tasks)} of {queue.total} open task(s) waiting for the LAA, the longest waiting first")
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands, each with its arguments."""

    p = command(sub, "record-activity", cmd_record_activity, "record a qualifying activity event "
                                                             "(starts the certificate's review if needed)")
    p.add_argument("case_reference", type=case_reference_arg)
    p.add_argument("--kind", required=True, help=f"one of: {', '.join(k.value for k in ActivityKind)}")
    p.add_argument("--event-id", required=True)
    p.add_argument("--occurred-at", type=timestamp_arg, default=None, help="ISO 8601 with timezone (default now)")
    p.add_argument("--source", default=None, help="who reported the event (default: the actor)")
    add_actor_argument(p, "recording it")

    p = command(sub, "respond", cmd_respond, "answer a certificate's open notification as a provider user")
    p.add_argument("case_reference", type=case_reference_arg)
    p.add_argument("--user", required=True, help="the provider user's login id")
    p.add_argument("--response", required=True, type=response_arg,
                   help=f"one of: {', '.join(r.value for r in Response)}")
    p.add_argument("--message", default=None, type=message_arg, help="optional, at most 2,000 characters")

    p = command(sub, "decide", cmd_decide, "an LAA caseworker's decision on the open task")
    p.add_argument("case_reference", type=case_reference_arg)
    p.add_argument("--caseworker", required=True)
    p.add_argument("--decision", required=True, choices=["close", "keep_open"])
    p.add_argument("--reason", default="")
    p.add_argument("--task-id", default=None, help="the task decided (refused if it is no longer the open one)")

    p = command(sub, "reassign", cmd_reassign, "a Cross Office user points the certificate at another provider user")
    p.add_argument("case_reference", type=case_reference_arg)
    p.add_argument("--user", required=True, help="the Cross Office user's login id")
    p.add_argument("--new-contact", required=True)

    p = command(sub, "close", cmd_close, "the certificate was discharged or closed elsewhere")
    p.add_argument("case_reference", type=case_reference_arg)
    p.add_argument("--reason", required=True)
    p.add_argument("--occurred-at", type=timestamp_arg, default=None)
    add_actor_argument(p, "closing it")

    p = command(sub, "status", cmd_status, "show a certificate's whole state")
    p.add_argument("case_reference", type=case_reference_arg)

    p = command(sub, "list", cmd_list, "list certificates by stage and firm (Temporal visibility)")
    p.add_argument("--stage", choices=[s.value for s in IcrStage])
    p.add_argument("--firm", type=firm_arg, help="provider firm id")
    p.add_argument("--limit", type=positive_int_arg, default=200)

    p = command(sub, "queue", cmd_queue, "the certificates waiting for the LAA, the longest waiting first, with "
                                         "each one's open task and the Web UI link to the same list")
    p.add_argument("--kind", choices=[k.value for k in TaskKind], help="one queue (default: every kind)")
    p.add_argument("--firm", type=firm_arg, help="provider firm id")
    p.add_argument("--limit", type=positive_int_arg, default=None,
                   help="show only the N longest waiting (default: every one; the count says how many in all)")
