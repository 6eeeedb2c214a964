"""The certificate workflow with a history limit low enough to see it continue as new.

Registered under the same name, on a test's own worker: outside callers can never lower the
limit (it is a class attribute, not an input)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

# Passed through the sandbox, as the workflow module does: one copy of the models.
with workflow.unsafe.imports_passed_through():
    from icr.domain.models import CertificateInput, CertificateStatus
    from workflows.certificate import CertificateWorkflow

SHORT_HISTORY_LIMIT = 40


@workflow.defn(name="CertificateWorkflow")
class ShortHistoryCertificateWorkflow(CertificateWorkflow):
    history_limit = SHORT_HISTORY_LIMIT

    # The SDK wants the run method declared on every workflow class.
    @workflow.run
    async def run(self, input: CertificateInput | None = None, *extra: Any) -> CertificateStatus:
        return await super().run(input, *extra)
