"""The floor: a trivial certificate-shaped workflow on the same server, through the same
worker settings, with no database, no rules and no encryption. Started by signal-with-start,
it writes a search attribute (as a certificate does when it starts); each later signal writes
another. What the engine reaches is measured against what this reaches in the same run.

Run as its own process (`python -m benchmarks.floor TEMPORAL_ADDRESS TASK_QUEUE`), like a worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from icr.runtime.settings import Settings
    from workflows.search_attributes import ICR_STAGE, POLICY_VERSION, PROVIDER_FIRM_ID


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    def __init__(self) -> None:
        self.signals = 0
        self.seen = 0

    @workflow.run
    async def run(self, key: str) -> None:
        # "<set>/<case reference>": the set's name tells one measurement's workflows apart.
        workflow.upsert_search_attributes([ICR_STAGE.value_set("Floor"),
                                           PROVIDER_FIRM_ID.value_set(key.split("/", 1)[0])])
        while True:
            await workflow.wait_condition(lambda: self.signals > self.seen)
            self.seen = self.signals
            workflow.upsert_search_attributes([POLICY_VERSION.value_set(self.seen)])

    @workflow.signal(name="ping")
    def ping(self, event: str) -> None:
        self.signals += 1


async def main(address: str, task_queue: str) -> None:
    settings = Settings.from_env()
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow],
                      max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                      max_cached_workflows=settings.max_cached_workflows,
                      max_concurrent_workflow_task_polls=settings.workflow_task_pollers):
        print("floor_worker_running", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)
