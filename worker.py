"""Runs a worker of the Inactive Case Review engine: `CertificateWorkflow` and its activities
on task queue `inactive-case-review`. Start as many as you like, on as many machines: they
share the work. Stops cleanly on SIGINT / SIGTERM: it stops polling,
lets running steps finish within ICR_SHUTDOWN_GRACE_SECONDS (the rest are retried by another
worker; nothing is lost or done twice) and exits 0. Waits for servers that are unreachable
at start instead of exiting; serves /livez and /readyz on ICR_HEALTH_PORT when set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import structlog

from icr.adapters.db.outbox import Outbox
from icr.adapters.mail.mailer import Mailer
from icr.runtime.engine import Runtime, build_worker, connected, metrics_runtime
from icr.runtime.health import Health, health_server, until_connected
from icr.runtime.logs import configure_logging
from icr.runtime.mail import mail_server
from icr.runtime.namespace import check_digest_schedule, register_digest_schedule
from icr.runtime.servers import announce_on_stderr
from icr.runtime.settings import ConfigurationError, Settings

log = structlog.get_logger("worker")


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    health = Health()

    def on_signal() -> None:
        health.stopping = True  # not ready from this moment: the orchestrator sends no more
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if not settings.payload_encryption:
        log.warning("payload_encryption_off", reason="ICR_PAYLOAD_ENCRYPTION=false: payloads are "
                    "stored in Temporal in plaintext")
    temporal_runtime, metrics_url = metrics_runtime(settings)
    async with health_server(health, settings.health_host, settings.health_port) as health_url, \
            contextlib.AsyncExitStack() as held:

        announce = announce_on_stderr(settings.temporal_namespace)  # once, not at every attempt

        async def connect() -> Runtime:
            attempt = contextlib.AsyncExitStack()
            try:
                runtime = await attempt.enter_async_context(connected(settings, temporal_runtime, announce=announce))
                # The schedule is `starter.py setup`'s (admin rights); on its own dev server the engine makes it.
                if runtime.services.temporal_embedded:
                    await register_digest_schedule(runtime.client, settings.task_queue)
                else:
                    await check_digest_schedule(runtime.client)
            except BaseException:
                await attempt.aclose()
                raise
            held.push_async_exit(attempt)
            return runtime

        # A server that is not there yet (a database outage, Temporal restarting) is waited
        # for, not given up on: exiting would only have the orchestrator restart the worker
        # into the same outage, and back off for longer each time.
        runtime = await until_connected(connect, stop)
        if runtime is None:
            log.info("worker_stopped", polled=False)
            return 0
        health.checks = {"database": lambda: runtime.store.pool.fetchval("SELECT 1"),
                         "temporal": lambda: _serving(runtime)}
        if runtime.services.ui_url:
            print(f"Temporal Web UI: {runtime.services.ui_url}", flush=True)
        async with mail_server(settings) as mail:
            mailer = Mailer(Outbox(runtime.store.pool), mail)
            async with build_worker(runtime.client, runtime.store, settings, mailer):
                health.polling = True
                log.info("worker_running", task_queue=settings.task_queue,
                         temporal=runtime.services.temporal_address, metrics=metrics_url, health=health_url,
                         max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                         max_cached_workflows=settings.max_cached_workflows,
                         max_concurrent_activities=settings.max_concurrent_activities,
                         workflow_task_pollers=settings.workflow_task_pollers)
                await stop.wait()
                # Leaving the block stops polling, lets running steps finish for up to the
                # grace period, then cancels what is left (retried by another worker).
                log.info("worker_stopping", grace_seconds=settings.shutdown_grace_seconds)
            health.polling = False
    log.info("worker_stopped", polled=True)
    return 0


async def _serving(runtime: Runtime) -> None:
    if not await runtime.client.service_client.check_health():
        raise RuntimeError("Temporal's frontend is not serving")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__)
    parser.add_argument("--max-concurrent-activities", type=int,
                        help="steps run at once by this worker (env ICR_MAX_CONCURRENT_ACTIVITIES)")
    parser.add_argument("--max-concurrent-workflow-tasks", type=int,
                        help="workflow tasks at once (env ICR_MAX_CONCURRENT_WORKFLOW_TASKS)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.max_concurrent_activities:
            settings.max_concurrent_activities = args.max_concurrent_activities
        if args.max_concurrent_workflow_tasks:
            settings.max_concurrent_workflow_tasks = args.max_concurrent_workflow_tasks
        configure_logging(settings.log_format, settings.log_level)
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
