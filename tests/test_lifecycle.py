"""Each branch of a certificate's review on the time-skipping server, asserting on the
PostgreSQL rows and on the `status` query."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from icr.models import CertificateStatus, RespondRequest
from tests.conftest import Engine, add_certificate, add_user

DAY = timedelta(days=1)
REF = "300001416143"


async def status(handle) -> CertificateStatus:
    return await handle.query("status", result_type=CertificateStatus)


async def due_certificate(engine: Engine, ref: str = REF, poa_paid: str = "0.00",
                          poa_recouped: str = "0.00"):
    """A registered certificate whose last activity was 608 days ago: due at once."""
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, ref, last_activity_at=now - 608 * DAY,
                          poa_paid=poa_paid, poa_recouped=poa_recouped)
    handle = await engine.start(ref)
    await engine.env.sleep(1)
    return handle


async def test_case_ongoing_renews_the_clock(engine: Engine) -> None:
    handle = await due_certificate(engine)
    s = await status(handle)
    assert s.stage == "AwaitingResponse"
    assert s.open_notification is not None
    result = await handle.execute_update(
        "respond", RespondRequest(user_login_id="CASEWORKER1", response="case_ongoing"),
        result_type=dict)
    assert result["outcome"] == "clock restarted"
    s = await status(handle)
    assert s.stage == "Active"
    assert s.open_notification is None
    rows = await engine.store.notifications_of(REF)
    assert [r["status"] for r in rows] == ["Responded"]
    ledger = await engine.store.ledger_of(REF)
    assert [r["kind"] for r in ledger] == ["icr_ongoing_response"]
