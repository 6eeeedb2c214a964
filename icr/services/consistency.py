"""Does each certificate's workflow agree with the database? What `starter.py check` runs.

The workflow's `status` and the rows the database holds for the same certificate must tell
the same story: the same open notification (dates, assignee, overdue), the same open task, as
many notifications and tasks as the workflow raised, no recorded activity the workflow has not
applied, the same recoupments, and the same closure. A message in flight makes them differ
for a moment, so a disagreement is reported only if it is still there after a short wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient, CertificateNotFound
from icr.domain.models import CertificateRecords, CertificateStatus, IcrStage


@dataclass(frozen=True)
class Disagreement:
    case_reference: str
    what: str

    def __str__(self) -> str:
        return f"{self.case_reference}: {self.what}"


def disagreements(status: CertificateStatus, records: CertificateRecords) -> list[str]:
    """Where the workflow's status and the database's rows differ (none when they agree)."""
    found: list[str] = []
    open_notifications = [n for n in records.notifications if n.is_open]
    wanted = status.open_notification
    if wanted is None:
        found += [f"the database has notification {n.notification_id} open; the workflow has none"
                  for n in open_notifications]
    elif [n.notification_id for n in open_notifications] != [wanted.notification_id]:
        found.append(f"open notification: the workflow has {wanted.notification_id}, the database "
                     f"{[n.notification_id for n in open_notifications] or 'none'}")
    else:
        row = open_notifications[0]
        for field, ours, theirs in [
            ("assigned_to", wanted.assigned_to, row.assigned_to),
            ("date_assigned", wanted.date_assigned, row.date_assigned),
            ("due_date", wanted.due_date, row.due_date),
            ("return_date", wanted.return_date, row.return_date),
            ("overdue", wanted.overdue, row.status == "Overdue"),
        ]:
            if ours != theirs:
                found.append(f"notification {row.notification_id} {field}: the workflow has {ours}, "
                             f"the database {theirs}")
    open_tasks = [(t.task_id, t.kind) for t in records.tasks if t.is_open]
    wanted_task = [] if status.open_task is None else [(status.open_task.task_id, status.open_task.kind.value)]
    if open_tasks != wanted_task:
        found.append(f"open task: the workflow has {wanted_task or 'none'}, the database {open_tasks or 'none'}")
    if len(records.notifications) != status.notifications_raised:
        found.append(f"notifications: the workflow raised {status.notifications_raised}, the database "
                     f"has {len(records.notifications)}")
    if len(records.tasks) != status.tasks_raised:
        found.append(f"tasks: the workflow raised {status.tasks_raised}, the database has {len(records.tasks)}")
    latest = records.latest_activity_at
    if latest is not None and (status.last_activity_at is None or latest > status.last_activity_at):
        found.append(f"activity at {latest.isoformat()} is recorded but not applied (the workflow's last "
                     f"activity: {status.last_activity_at.isoformat() if status.last_activity_at else 'none'})")
    if latest is not None and status.inactivity_deadline is not None and records.inactivity_days is not None \
            and status.inactivity_deadline < latest + timedelta(days=records.inactivity_days):
        found.append(f"deadline {status.inactivity_deadline.isoformat()} is earlier than the recorded activity "
                     f"allows ({(latest + timedelta(days=records.inactivity_days)).isoformat()})")
    recouped = sorted(r.amount for r in status.recoupments)
    if recouped != sorted(records.recoupments):
        found.append(f"recoupments: the workflow has {recouped}, the database {sorted(records.recoupments)}")
    if (status.stage == IcrStage.CLOSED) != records.closed:
        found.append(f"closure: the workflow is {status.stage.value}, the database has the certificate "
                     f"{'closed' if records.closed else 'open'}")
    return found


async def check_one(certificates: CertificateClient, store: Store, case_reference: str) -> list[str]:
    try:
        status = await certificates.status(case_reference, rpc_timeout=timedelta(seconds=10))
    except CertificateNotFound:
        return ["no workflow runs for this certificate"]
    records = await store.records_of(case_reference, status.policy_version)
    return disagreements(status, records)


async def check(certificates: CertificateClient, store: Store, case_references: Iterable[str], *,
                settle: float = 5.0, rounds: int = 3, concurrency: int = 20) -> list[Disagreement]:
    """The certificates whose workflow and database still disagree after `settle` seconds
    (checked again `rounds` times: a disagreement that goes away was a message in flight)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(ref: str) -> tuple[str, list[str]]:
        async with gate:
            return ref, await check_one(certificates, store, ref)

    pending = list(dict.fromkeys(case_references))
    found: dict[str, list[str]] = {}
    for round_ in range(max(rounds, 1)):
        if round_:
            await asyncio.sleep(settle / max(rounds - 1, 1))
        found = {ref: what for ref, what in await asyncio.gather(*(one(ref) for ref in pending)) if what}
        pending = list(found)
        if not pending:
            break
    return [Disagreement(ref, what) for ref, whats in found.items() for what in whats]
