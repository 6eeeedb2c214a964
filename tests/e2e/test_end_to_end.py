"""End to end on the dev server through the contract only: a client that imports nothing from
the project signals and updates by name and finds the certificate by search attribute.

The engine runs as it does in production: `worker.py` as a process on the contract's task
queue, the registry loaded by `starter.py import`, and a plain Temporal client with the
default JSON converter (no pydantic) standing in for the provider portal, the activity
sources and the Web UI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    TASK_QUEUE,
    USER_HEADER,
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    engine_task_queue,  # noqa: F401  (fixture)
    eventually,
    new_case_reference,
    query_status,
    target_of,
    wait_listed,
    wait_stage,
    worker,  # noqa: F401  (fixture)
    workflow_id,
    write_csv,
)

ACCEPTED_RESPONSES = ["case_ongoing", "complete_to_be_billed", "complete_costs_negotiated",
                      "complete_court_assessment", "complete_no_bill_due"]


@pytest.fixture(scope="module")
async def client(dev_server: WorkflowEnvironment) -> Client:  # noqa: F811
    """A plain client: default data converter, nothing of the project's."""
    return await Client.connect(target_of(dev_server))


@pytest.fixture(scope="module")
async def due_certificate(engine_env: EngineEnv, worker: WorkerProcess,  # noqa: F811
                          tmp_path_factory: pytest.TempPathFactory) -> str:
    """A certificate inactive for 700 days, loaded through `starter.py import`."""
    ref = new_case_reference()
    folder = tmp_path_factory.mktemp("csv")
    users = write_csv(folder / "users.csv", USER_HEADER, [
        ["E2E-CONTACT", FIRM, "case_management", "false"],
        ["E2E-MANAGER", FIRM, "office_manager", "false"],
    ])
    last_activity = (datetime.now(UTC) - timedelta(days=700)).replace(microsecond=0)
    certificates = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER, [
        [ref, FIRM, "2L847Q", "E2E-CONTACT", "2020-01-06", last_activity.isoformat(), "1200.00", "200.00"],
    ])
    caseworkers = write_csv(folder / "caseworkers.csv", ["caseworker_id", "active"], [["CW1", "true"]])
    run = await engine_env.starter("import", "users", str(users))
    assert run.code == 0, str(run)
    run = await engine_env.starter("import", "caseworkers", str(caseworkers))
    assert run.code == 0, str(run)
    run = await engine_env.starter("import", "certificates", str(certificates))
    assert run.code == 0, str(run)
    assert "1 imported" in run.stdout and "1 workflow started" in run.stdout, str(run)
    return ref


async def test_certificate_lifecycle_through_the_contract(client: Client, due_certificate: str) -> None:
    ref = due_certificate
    wid = f"certificate-{ref}"

    # The Web UI's list filter finds it awaiting the provider's response.
    await wait_listed(client, f"IcrStage = 'AwaitingResponse' AND ProviderFirmId = '{FIRM}'", wid)
    handle = client.get_workflow_handle(wid)
    description = await handle.describe()
    assert description.workflow_type == "CertificateWorkflow"
    assert description.task_queue == TASK_QUEUE
    attrs = description.typed_search_attributes
    assert attrs.get(SearchAttributeKey.for_keyword("CaseReference")) == ref
    assert attrs.get(SearchAttributeKey.for_keyword("ProviderFirmId")) == FIRM
    assert attrs.get(SearchAttributeKey.for_int("NotificationCycle")) == 1
    assert attrs.get(SearchAttributeKey.for_datetime("ResponseDueDate")) is not None

    # The `status` query by name: plain JSON.
    status: dict[str, Any] = await handle.query("status")
    assert isinstance(status, dict)
    assert status["case_reference"] == ref
    assert status["stage"] == "AwaitingResponse"
    assert status["notification_cycle"] == 1
    assert status["open_task"] is None
    notification = status["open_notification"]
    assert notification["assigned_to"] == "E2E-CONTACT"
    assert notification["overdue"] is False
    due = datetime.fromisoformat(notification["due_date"])
    assigned = datetime.fromisoformat(notification["date_assigned"])
    assert due.tzinfo is not None and due - assigned == timedelta(days=14)

    # A refused update: a clear error naming the accepted values, and nothing changes.
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("respond", {"user_login_id": "E2E-CONTACT", "response": "maybe"})
    message = str(getattr(caught.value.cause, "message", caught.value.cause))
    assert all(value in message for value in ACCEPTED_RESPONSES), message
    assert await handle.query("status") == status

    # Refused for who is asking (checked against the registry, inside the update).
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("respond", {"user_login_id": "E2E-MANAGER",
                                                "response": "complete_to_be_billed"})
    assert "Office Manager" in str(getattr(caught.value.cause, "message", caught.value.cause))
    assert await handle.query("status") == status

    # The provider's answer, by name.
    result = await handle.execute_update(
        "respond", {"user_login_id": "E2E-CONTACT", "response": "complete_to_be_billed"})
    assert result["response"] == "complete_to_be_billed"
    assert result["stage"] == "LaaReview"
    assert result["notification_id"] == notification["notification_id"]
    status = await handle.query("status")
    assert status["stage"] == "LaaReview"
    assert status["open_notification"] is None
    assert status["open_task"]["kind"] == "review"
    await wait_listed(client, f"IcrStage = 'LaaReview' AND CaseReference = '{ref}'", wid)

    # The caseworker closes it from the Web UI: the workflow completes, the outstanding
    # payments on account (1200.00 paid - 200.00 already recouped) are recouped.
    await handle.signal("laa_decision", {"caseworker": "CW1", "decision": "close", "reason": "done"})
    final = await handle.result()
    assert final["stage"] == "Closed"
    assert final["open_task"] is None and final["open_notification"] is None
    assert [Decimal(r["amount"]) for r in final["recoupments"]] == [Decimal("1000.00")]
    assert final["recoupments"][0]["amount"] == "1000.00"
    assert datetime.fromisoformat(final["recoupments"][0]["at"]).tzinfo is not None
    assert any("CW1" in entry["what"] for entry in final["history"])
    await wait_listed(client, f"IcrStage = 'Closed' AND ProviderFirmId = '{FIRM}'", wid)
    ids_awaiting = [e.id async for e in client.list_workflows(
        f"IcrStage = 'AwaitingResponse' AND CaseReference = '{ref}'")]
    assert ids_awaiting == []


async def test_signal_with_start_for_an_unregistered_certificate(client: Client,
                                                                worker: WorkerProcess) -> None:  # noqa: F811
    ref = new_case_reference()
    occurred_at = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    event = {"event_id": "x1", "kind": "bill", "occurred_at": occurred_at.isoformat()}
    handle = await client.start_workflow(
        "CertificateWorkflow", {"case_reference": ref}, id=f"certificate-{ref}", task_queue=TASK_QUEUE,
        start_signal="record_activity", start_signal_args=[event])

    async def recorded() -> dict[str, Any] | None:
        status = await query_status(client, ref)
        return status if status["last_activity_at"] is not None else None

    status = await eventually(recorded, f"the activity recorded on {ref}")
    assert status["case_reference"] == ref
    assert status["stage"] == "Active"
    assert datetime.fromisoformat(status["last_activity_at"]) == occurred_at
    deadline = datetime.fromisoformat(status["inactivity_deadline"])
    assert deadline > datetime.now(UTC) + timedelta(days=300)
    assert status["open_notification"] is None and status["open_task"] is None
    assert status["policy_version"] is not None

    # Signal-with-start on a running certificate signals it: same run, a later event counts.
    later = occurred_at + timedelta(days=1)
    second = await client.start_workflow(
        "CertificateWorkflow", {"case_reference": ref}, id=f"certificate-{ref}", task_queue=TASK_QUEUE,
        start_signal="record_activity",
        start_signal_args=[{"event_id": "x2", "kind": "case_plan", "occurred_at": later.isoformat(),
                            "source": "e2e"}])
    assert second.run_id == handle.run_id

    async def moved() -> dict[str, Any] | None:
        status = await query_status(client, ref)
        return status if status["last_activity_at"] != status_before["last_activity_at"] else None

    status_before = status
    status = await eventually(moved, f"the second activity recorded on {ref}")
    assert datetime.fromisoformat(status["last_activity_at"]) == later
    assert datetime.fromisoformat(status["inactivity_deadline"]) == deadline + timedelta(days=1)
    await wait_listed(client, f"IcrStage = 'Active' AND CaseReference = '{ref}'", handle.id)



async def test_update_missing_a_required_field_is_refused_clearly(client: Client,
                                                                  worker: WorkerProcess) -> None:  # noqa: F811
    ref = new_case_reference()
    event = {"event_id": "m1", "kind": "bill", "occurred_at": datetime.now(UTC).isoformat()}
    handle = await client.start_workflow(
        "CertificateWorkflow", {"case_reference": ref}, id=f"certificate-{ref}", task_queue=TASK_QUEUE,
        start_signal="record_activity", start_signal_args=[event])
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("respond", {"response": "maybe"})  # no user_login_id
    message = str(getattr(caught.value.cause, "message", caught.value.cause))
    assert "user_login_id" in message, message
    assert (await handle.query("status"))["stage"] == "Active"


async def test_setup_schedules_the_daily_digest_at_seven_uk_time(client: Client, engine_env: EngineEnv,  # noqa: F811
                                                                 worker: WorkerProcess) -> None:  # noqa: F811
    # The workers only check the schedule: `setup`, run once with admin rights, makes it.
    run = await engine_env.starter("setup")
    assert run.code == 0 and "schedule icr-daily-digest" in run.stdout, str(run)
    described = await client.get_schedule_handle("icr-daily-digest").describe()
    action = described.schedule.action
    assert getattr(action, "workflow", None) == "DailyDigestWorkflow"
    assert described.schedule.spec.time_zone_name == "Europe/London"
    [calendar] = described.schedule.spec.calendars  # the server keeps cron as a calendar
    assert [(r.start, r.end) for r in calendar.hour] == [(7, 7)]
    assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]


async def test_shortened_policy_makes_running_certificates_due_at_once(
        client: Client, engine_env: EngineEnv, worker: WorkerProcess,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Last in this module: it changes the policy for the module's database."""
    ref = new_case_reference()
    folder = tmp_path_factory.mktemp("policy")
    users = write_csv(folder / "users.csv", USER_HEADER, [["E2E-POLICY", FIRM, "case_management", "false"]])
    last_activity = (datetime.now(UTC) - timedelta(days=400)).replace(microsecond=0)
    certificates = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER, [
        [ref, FIRM, "2L847Q", "E2E-POLICY", "2020-01-06", last_activity.isoformat(), "0.00", "0.00"]])
    assert (await engine_env.starter("import", "users", str(users))).code == 0
    assert (await engine_env.starter("import", "certificates", str(certificates))).code == 0
    status = await wait_stage(client, ref, "Active")

    async def loaded() -> dict[str, Any] | None:  # it reads the registry in its first step
        status = await query_status(client, ref)
        return status if status["policy_version"] is not None else None
    status = await eventually(loaded, f"certificate {ref} to read the registry")
    assert status["policy_version"] == 2

    # The dry run first: it shows the certificate falling due at once, and changes nothing.
    run = await engine_env.starter("policy", "set", "--inactivity-days", "365", "--reason", "back to 12 months",
                                   "--actor", "e2e-ops", "--dry-run")
    assert run.code == 0, str(run)
    at_once = next(line for line in run.stdout.splitlines() if line.strip().startswith("at once"))
    assert ref in at_once, str(run)
    assert (await query_status(client, ref))["policy_version"] == 2

    run = await engine_env.starter("set-policy", "--inactivity-days", "365", "--note", "back to 12 months",
                                   "--actor", "e2e-ops")  # the old name still works
    assert run.code == 0, str(run)
    assert "policy version 3: 365 days" in run.stdout, str(run)
    assert "roll-out 1 finished" in run.stdout, str(run)
    status = await wait_stage(client, ref, "AwaitingResponse")
    assert status["policy_version"] == 3
    await wait_listed(client, f"PolicyVersion = 3 AND CaseReference = '{ref}'", workflow_id(ref))

    # An outage across the response window moves the due date by its length.
    due = datetime.fromisoformat(status["open_notification"]["due_date"])
    start = datetime.now(UTC) + timedelta(days=1)
    run = await engine_env.starter("outage", "declare", "--from", start.isoformat(),
                                   "--to", (start + timedelta(days=2)).isoformat(), "--reason", "CCMS upgrade",
                                   "--actor", "e2e-ops")
    assert run.code == 0, str(run)

    async def moved() -> dict | None:
        s = await query_status(client, ref)
        return s if datetime.fromisoformat(s["open_notification"]["due_date"]) == due + timedelta(days=2) else None
    status = await eventually(moved, "the due date moved by the outage")
    [extension] = status["open_notification"]["extensions"]
    assert extension["outage_id"] == 1 and extension["reason"] == "CCMS upgrade"
