"""Runs a worker of the Inactive Case Review engine: `CertificateWorkflow` and its activities
on task queue `inactive-case-review`. Start as many as you like, on as many machines: they
share the work. Stops cleanly on SIGINT / SIGTERM (in-flight steps finish or are retried
by another worker; nothing is lost or done twice)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import structlog

from icr.adapters.db.outbox import Outbox
from icr.adapters.mail.mailer import Mailer
from icr.runtime.engine import build_worker, connected, ensure_digest_schedule, metrics_runtime
from icr.runtime.keyring import ConfigurationError
from icr.runtime.logs import configure_logging
from icr.runtime.mail import mail_server
from icr.runtime.settings import Settings

log = structlog.get_logger("worker")


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not settings.payload_encryption:
        log.warning("payload_encryption_off", reason="ICR_PAYLOAD_ENCRYPTION=false: payloads are "
                    "stored in Temporal in plaintext")
    temporal_runtime, metrics_url = metrics_runtime(settings)
    async with connected(settings, temporal_runtime) as runtime, mail_server(settings) as mail:
        await ensure_digest_schedule(runtime.client, settings.task_queue)
        if runtime.services.ui_url:
            print(f"Temporal Web UI: {runtime.services.ui_url}", flush=True)
        mailer = Mailer(Outbox(runtime.store.pool), mail)
        async with build_worker(runtime.client, runtime.store, settings, mailer):
            log.info("worker_running", task_queue=settings.task_queue,
                     temporal=runtime.services.temporal_address, metrics=metrics_url,
                     max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                     max_cached_workflows=settings.max_cached_workflows,
                     max_concurrent_activities=settings.max_concurrent_activities,
                     workflow_task_pollers=settings.workflow_task_pollers)
            await stop.wait()
            log.info("worker_stopping")
    log.info("worker_stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__)
    parser.add_argument("--max-concurrent-activities", type=int,
                        help="steps run at once by this worker (env ICR_MAX_CONCURRENT_ACTIVITIES)")
    parser.add_argument("--max-concurrent-workflow-tasks", type=int,
                        help="workflow tasks at once (env ICR_MAX_CONCURRENT_WORKFLOW_TASKS)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.max_concurrent_activities:
        settings.max_concurrent_activities = args.max_concurrent_activities
    if args.max_concurrent_workflow_tasks:
        settings.max_concurrent_workflow_tasks = args.max_concurrent_workflow_tasks
    configure_logging(settings.log_format, settings.log_level)
    try:
        return asyncio.run(run(settings))
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's threads can abort the interpreter at exit (PyGILState_Release); all is shut
    # down cleanly by now, so leave without running interpreter teardown.
    os._exit(code)
