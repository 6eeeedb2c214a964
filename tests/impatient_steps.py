"""The certificate workflow with local steps that give up after two attempts (a second): a test sees a
database outage outlast the patience in real time. Registered under the same name, on a
test's own worker (a class attribute, as `history_limit` in tests/short_history.py)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from icr.domain.models import CertificateInput, CertificateStatus
    from workflows.certificate import CertificateWorkflow


@workflow.defn(name="CertificateWorkflow")
class ImpatientCertificateWorkflow(CertificateWorkflow):
    local_attempts = 2  # one second of retrying

    @workflow.run
    async def run(self, input: CertificateInput | None = None, *extra: Any) -> CertificateStatus:
        return await super().run(input, *extra)
