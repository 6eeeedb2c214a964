"""What `starter.py check` reads of a certificate (Store.records_of), for cases the simulation
(tools/simulate.py) found it reading wrong."""

from __future__ import annotations

from datetime import UTC, datetime

from icr.adapters.db.store import Store
from icr.domain.models import CloseCertificate

REF = "300000000031"
AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


async def test_a_certificate_closed_while_unregistered_reads_as_closed(store: Store) -> None:
    # Closed elsewhere before any import registered it: no certificate row, a closed_certificates one.
    await store.close_certificate(CloseCertificate(
        case_reference=REF, recoupment_id=f"RCP-{REF}", recoup=False, reason="closed elsewhere: discharged",
        actor="close_certificate from ccms", at=AT))
    assert await store.certificate_row(REF) is None

    records = await store.records_of(REF, 2)
    assert records.closed is True
    assert records.recoupments == []
