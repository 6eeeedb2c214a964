"""Wiring: the Temporal client, the database pool and the worker, from settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client, TLSConfig
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.worker import Interceptor, Worker, WorkflowRunner

from activities.certificate_activities import CertificateActivities
from activities.mail_activities import MailActivities
from icr.adapters.db.migrate import migrate
from icr.adapters.db.outbox import Outbox
from icr.adapters.db.store import Store
from icr.adapters.mail.mailer import Mailer
from icr.adapters.temporal.client import CertificateClient
from icr.adapters.temporal.codec import EncryptionCodec, data_converter, worker_data_converter
from icr.adapters.temporal.metrics import EngineMetrics
from icr.adapters.temporal.sandbox import engine_workflow_runner
from icr.runtime.http import free_port
from icr.runtime.keyring import payload_keys
from icr.runtime.mail import mail_config
from icr.runtime.namespace import check_search_attributes, register_search_attributes
from icr.runtime.servers import Services, database_address, services
from icr.runtime.settings import Settings
from workflows.certificate import CertificateWorkflow, MessageArguments
from workflows.digest import DailyDigestWorkflow

log = structlog.get_logger(__name__)

DEFAULT_METRICS_PORT = 9464
# How long tasks wait for a worker, in milliseconds, with bounds at the alerts' thresholds (30 s
# and CCMS's 15 minutes: deploy/prometheus/alerts.yml); the SDK's default buckets jump from
# 100 s to 1,000 s, which cannot tell a 15-minute wait from a 2-minute one.
_WAIT_BUCKETS_MS = [50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000,
                    900000, 1800000, 3600000]
SCHEDULE_TO_START_BUCKETS = {"workflow_task_schedule_to_start_latency": _WAIT_BUCKETS_MS,
                             "activity_schedule_to_start_latency": _WAIT_BUCKETS_MS}


def metrics_runtime(settings: Settings) -> tuple[TemporalRuntime | None, str | None]:
    """A Temporal runtime exporting the SDK's metrics (and the engine's counters, made from its
    meter) to Prometheus, and the URL it serves; (None, None) when ICR_METRICS_PORT=0."""
    if settings.metrics_port == 0:
        return None, None
    port = settings.metrics_port or free_port(settings.metrics_host, DEFAULT_METRICS_PORT, "ICR_METRICS_PORT")
    runtime = TemporalRuntime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=f"{settings.metrics_host}:{port}", histogram_bucket_overrides=SCHEDULE_TO_START_BUCKETS)))
    shown = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "") else settings.metrics_host
    return runtime, f"http://{shown}:{port}/metrics"


class ServerUnreachable(ConnectionError):
    """A server the engine needs did not answer at its address (named, never with a password).
    A ConnectionError, so that what waits for servers (health.until_connected) still waits."""

    def __init__(self, server: str, address: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach {server} at {address}: {type(cause).__name__}: {cause}")
        self.server = server
        self.address = address


# A server that is down, refusing connections, or not answering; not one that answers "no".
UNREACHABLE_DATABASE = (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                        asyncpg.TooManyConnectionsError)


async def connect_temporal(settings: Settings, address: str, runtime: TemporalRuntime | None = None) -> Client:
    tls: bool | TLSConfig = settings.temporal_tls
    if settings.temporal_tls_ca_cert or settings.temporal_tls_client_cert:
        tls = TLSConfig(
            server_root_ca_cert=settings.temporal_tls_ca_cert.read_bytes() if settings.temporal_tls_ca_cert else None,
            client_cert=settings.temporal_tls_client_cert.read_bytes() if settings.temporal_tls_client_cert else None,
            client_private_key=settings.temporal_tls_client_key.read_bytes() if settings.temporal_tls_client_key else None,
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    keys = payload_keys(settings, embedded=settings.temporal_address is None)
    try:
        return await Client.connect(
            address, namespace=settings.temporal_namespace, api_key=api_key, runtime=runtime,
            tls=tls or bool(api_key), data_converter=data_converter(EncryptionCodec(keys) if keys else None))
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        raise ServerUnreachable("the Temporal server", address, err) from err


@contextlib.asynccontextmanager
async def migrated_store(url: str, pool_size: int = 10) -> AsyncIterator[Store]:
    """A migrated database's store."""
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
    except UNREACHABLE_DATABASE as err:
        raise ServerUnreachable("PostgreSQL", database_address(url), err) from err
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield Store(pool)
    finally:
        await pool.close()


def build_worker(client: Client, store: Store, settings: Settings, mailer: Mailer | None = None, *,
                 certificate_workflow: type[CertificateWorkflow] = CertificateWorkflow,
                 interceptors: Sequence[Interceptor] = ()) -> Worker:
    """The engine's worker. `mailer`: how the daily digest is sent (see icr.runtime.mail.mail_server);
    by default the SMTP server in settings, if any. Tests may register a subclass of the
    certificate workflow (a low history limit) or interceptors (a crash between two steps);
    production passes neither."""
    metrics = EngineMetrics(client.service_client.config.runtime.metric_meter
                            if client.service_client.config.runtime else None)
    activities = CertificateActivities(store, metrics)
    mail = MailActivities(mailer or Mailer(Outbox(store.pool), mail_config(settings)), metrics)
    # The same connection, with the worker's lenient decode of what outside callers send.
    config = client.config()
    config["data_converter"] = worker_data_converter(client.data_converter)
    worker_client = Client(**config)
    return Worker(
        worker_client,
        task_queue=settings.task_queue,
        workflows=[certificate_workflow, DailyDigestWorkflow],
        activities=activities.all() + mail.all(),
        interceptors=[MessageArguments(), *interceptors],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_queue_timeout_seconds),
        max_concurrent_workflow_task_polls=settings.workflow_task_pollers,
        max_concurrent_activity_task_polls=settings.activity_task_pollers,
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        workflow_runner=workflow_runner(cache_contexts=settings.sandbox_context_cache),
    )


def workflow_runner(cache_contexts: bool = True) -> WorkflowRunner:
    """The sandbox the engine's workflows run in, on a worker and in a replayer (see
    icr/adapters/temporal/sandbox.py)."""
    return engine_workflow_runner(cache_contexts)


@dataclass
class Runtime:
    """What a command runs with: a Temporal client and a store, each present only when the
    command asked for that server (a command that reads only PostgreSQL never reaches Temporal)."""

    temporal_client: Client | None
    database_store: Store | None
    services: Services
    settings: Settings

    @property
    def client(self) -> Client:
        if self.temporal_client is None:
            raise RuntimeError("this command was started without Temporal")  # a wiring mistake, not the user's
        return self.temporal_client

    @property
    def store(self) -> Store:
        if self.database_store is None:
            raise RuntimeError("this command was started without PostgreSQL")
        return self.database_store

    @property
    def certificates(self) -> CertificateClient:
        """The typed client of the certificates' workflows on this runtime's task queue."""
        return CertificateClient(self.client, self.settings.task_queue)


@contextlib.asynccontextmanager
async def connected(settings: Settings, runtime: TemporalRuntime | None = None, *, temporal: bool = True,
                    database: bool = True, check_namespace: bool = True,
                    announce: Callable[[Services], None] | None = None) -> AsyncIterator[Runtime]:
    """The servers this command uses (`temporal`, `database`; as configured, or embedded where
    allowed), a Temporal client and a migrated database. `announce` hears which servers before
    anything connects. On the embedded dev server the engine registers its search attributes
    itself; on any other it only checks them (`check_namespace`; `starter.py setup` registers)."""
    async with services(settings, temporal=temporal, database=database) as svc:
        if announce is not None:
            announce(svc)
        client = None
        if svc.temporal_address is not None:
            client = await connect_temporal(settings, svc.temporal_address, runtime)
            if svc.temporal_embedded:
                await register_search_attributes(client, settings.temporal_namespace)
            elif check_namespace:
                await check_search_attributes(client, settings.temporal_namespace)
        if svc.database_url is None:
            yield Runtime(client, None, svc, settings)
            return
        async with migrated_store(svc.database_url, settings.db_pool_size) as store:
            yield Runtime(client, store, svc, settings)
