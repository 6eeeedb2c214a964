"""Configuration, read once from the environment at the edge (worker.py, starter.py) and
passed down. Secrets are `SecretStr`: they print as `**********` in logs, errors and reprs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "inactive-case-review"
ROOT = Path(__file__).resolve().parents[2]  # the project root (icr/runtime/settings.py)


class ConfigurationError(RuntimeError):
    """A setting the engine cannot start with; the message says which and what to do."""


class Settings(BaseSettings):
    # Each field reads the variable named in its alias; code may also pass it by field name.
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", env_ignore_empty=True)

    # Which servers: TEMPORAL_ADDRESS and DATABASE_URL, or the embedded ones (docs/deployment.md
    # 'Servers only as configured'). ICR_EMBEDDED unset: embedded only when neither variable is
    # set and ICR_ENVIRONMENT is not production (the image sets production); true: embedded for
    # whichever is unset, on purpose; false: never.
    embedded: bool | None = Field(default=None, validation_alias="ICR_EMBEDDED")
    environment: Literal["development", "production"] = Field(default="development",
                                                              validation_alias="ICR_ENVIRONMENT")
    # Unset (and embedded allowed): the engine starts the Temporal dev server (with the Web UI) itself.
    temporal_address: str | None = Field(default=None, validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_api_key: SecretStr | None = Field(default=None, validation_alias="TEMPORAL_API_KEY")
    temporal_tls: bool = Field(default=False, validation_alias="TEMPORAL_TLS")
    temporal_tls_ca_cert: Path | None = Field(default=None, validation_alias="TEMPORAL_TLS_CA_CERT")
    temporal_tls_client_cert: Path | None = Field(default=None, validation_alias="TEMPORAL_TLS_CLIENT_CERT")
    temporal_tls_client_key: Path | None = Field(default=None, validation_alias="TEMPORAL_TLS_CLIENT_KEY")
    # The Web UI of that server, for the links the command line prints (e.g. https://temporal-ui.internal).
    temporal_ui_url: str | None = Field(default=None, validation_alias="TEMPORAL_UI_URL")
    # Unset (and embedded allowed): the engine starts embedded PostgreSQL in the data directory.
    # A URL carries its password, so it is a secret too.
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=ROOT / ".data", validation_alias="ICR_DATA_DIR")
    task_queue: str = Field(default=TASK_QUEUE, validation_alias="ICR_TASK_QUEUE")
    temporal_port: int = Field(default=7233, validation_alias="ICR_TEMPORAL_PORT")
    ui_port: int = Field(default=8233, validation_alias="ICR_UI_PORT")
    # Worker tuning (docs/operations.md, 'Workers').
    max_concurrent_activities: int = Field(default=100, validation_alias="ICR_MAX_CONCURRENT_ACTIVITIES")
    max_concurrent_workflow_tasks: int = Field(default=100, validation_alias="ICR_MAX_CONCURRENT_WORKFLOW_TASKS")
    workflow_task_pollers: int = Field(default=8, validation_alias="ICR_WORKFLOW_TASK_POLLERS")
    activity_task_pollers: int = Field(default=2, validation_alias="ICR_ACTIVITY_TASK_POLLERS")
    # Prometheus: each worker serves /metrics here. Unset: 9464, or the next free port when
    # another worker on this machine has it (the port is logged at start). 0: no endpoint.
    metrics_port: int | None = Field(default=None, validation_alias="ICR_METRICS_PORT")
    metrics_host: str = Field(default="0.0.0.0", validation_alias="ICR_METRICS_HOST")
    # Liveness and readiness (icr/runtime/health.py): GET /livez and /readyz on this port.
    # Unset or 0: not served (several workers on one machine need no probes).
    health_port: int | None = Field(default=None, validation_alias="ICR_HEALTH_PORT")
    health_host: str = Field(default="0.0.0.0", validation_alias="ICR_HEALTH_HOST")
    # On SIGTERM a worker stops polling and gives running steps this long to finish before it
    # cancels them (they are then retried elsewhere); keep it below the orchestrator's own
    # grace period (the Kubernetes manifests: 25 s of 40).
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, validation_alias="ICR_SHUTDOWN_GRACE_SECONDS")
    db_pool_size: int = Field(default=10, validation_alias="ICR_DB_POOL_SIZE")
    # The daily digest e-mail. With embedded servers, unset ones fall back to a local SMTP sink
    # under the data directory and example addresses; otherwise the mailer refuses to start
    # without ICR_SMTP_HOST, ICR_MAIL_FROM and ICR_PORTAL_URL (icr/runtime/mail.py).
    smtp_host: str | None = Field(default=None, validation_alias="ICR_SMTP_HOST")
    smtp_port: int = Field(default=587, validation_alias="ICR_SMTP_PORT")
    smtp_starttls: bool = Field(default=True, validation_alias="ICR_SMTP_STARTTLS")
    smtp_username: str | None = Field(default=None, validation_alias="ICR_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="ICR_SMTP_PASSWORD")
    smtp_timeout: float = Field(default=30.0, validation_alias="ICR_SMTP_TIMEOUT")
    mail_from: str | None = Field(default=None, validation_alias="ICR_MAIL_FROM")
    portal_url: str | None = Field(default=None, validation_alias="ICR_PORTAL_URL")
    # Payload encryption (AES-256-GCM): `id:base64key,...`, the first (or ICR_PAYLOAD_KEY_ID)
    # encrypts, the others only decrypt what they wrote. Unset on the embedded default: a key
    # is made once in the data directory. Unset with a real Temporal: refused at start unless
    # ICR_PAYLOAD_ENCRYPTION=false says so on purpose.
    payload_keys: SecretStr | None = Field(default=None, validation_alias="ICR_PAYLOAD_KEYS")
    payload_key_id: str | None = Field(default=None, validation_alias="ICR_PAYLOAD_KEY_ID")
    payload_encryption: bool = Field(default=True, validation_alias="ICR_PAYLOAD_ENCRYPTION")
    # The codec server the Web UI decodes payloads through.
    # Unset: the port after the Web UI's (8234 beside the embedded UI on 8233).
    codec_port: int | None = Field(default=None, validation_alias="ICR_CODEC_PORT")
    codec_token: SecretStr | None = Field(default=None, validation_alias="ICR_CODEC_TOKEN")
    # The Web UI's origin(s), comma-separated; unset: the embedded UI's.
    codec_cors_origins: str | None = Field(default=None, validation_alias="ICR_CODEC_CORS_ORIGINS")
    # Workflows kept in a worker's memory between their tasks (the SDK's sticky cache): a
    # cached certificate's task runs only its new events instead of replaying its history.
    # Safe since the workflow refuses a stale clock (workflows/clock.py: the race that made
    # chaos runs with a cache leave histories that no longer replayed). 500 keeps a worker
    # well under 300 MB.
    # At least 1: a certificate's local steps (workflows/certificate.py) run while its workflow
    # task is open, and a worker with no cache drops the certificate after each activation,
    # cancelling the step (the SDK then waits out the task's 10 s timeout and runs it again).
    max_cached_workflows: int = Field(default=500, ge=1, validation_alias="ICR_MAX_CACHED_WORKFLOWS")
    # How long a certificate's workflow task waits on this worker's own (sticky) queue before
    # the server hands it to any worker. A worker killed outright delays its certificates' next
    # tasks by up to this much; a task that waits longer than this behind a backlog is
    # dispatched a second time instead. The SDK's 10 s
    # timed out half the tasks of a burst of 2,000 events in the benchmark (0.5 per event),
    # 60 s none, for 9% more events per second: well inside CCMS's 15 minutes either way.
    sticky_queue_timeout_seconds: float = Field(default=60, gt=0, validation_alias="ICR_STICKY_QUEUE_TIMEOUT_SECONDS")
    # A payload's serialization context answered without entering the workflow's sandbox where
    # it can only be the workflow's own, else asked once per command between activations
    # (icr/adapters/temporal/sandbox.py). It leans on how the SDK answers; false asks the sandbox
    # every time, as the SDK does alone (a kill switch, and the benchmark's "before").
    sandbox_context_cache: bool = Field(default=True, validation_alias="ICR_SANDBOX_CONTEXT_CACHE")
    # The provider portal (`python -m icr.portal`; `./run demo` serves one too). Its public
    # address (the OpenID Connect redirect goes back to it; https makes its cookie Secure).
    portal_host: str = Field(default="127.0.0.1", validation_alias="ICR_PORTAL_HOST")
    portal_port: int = Field(default=8300, validation_alias="ICR_PORTAL_PORT")
    portal_public_url: str | None = Field(default=None, validation_alias="ICR_PORTAL_PUBLIC_URL")
    # Signs the portal's session cookies; at least 32 characters. Unset: refused at start
    # (the demo makes one of its own).
    portal_session_secret: SecretStr | None = Field(default=None, validation_alias="ICR_PORTAL_SESSION_SECRET")
    # OpenID Connect sign-in: the provider's issuer URL (its discovery document is at
    # ISSUER/.well-known/openid-configuration), this client's id and secret, and the claim of
    # the verified ID token that holds the user's CCMS login id.
    oidc_issuer: str | None = Field(default=None, validation_alias="ICR_OIDC_ISSUER")
    oidc_client_id: str | None = Field(default=None, validation_alias="ICR_OIDC_CLIENT_ID")
    oidc_client_secret: SecretStr | None = Field(default=None, validation_alias="ICR_OIDC_CLIENT_SECRET")
    oidc_login_claim: str = Field(default="sub", validation_alias="ICR_OIDC_LOGIN_CLAIM")
    log_format: str = Field(default="console", validation_alias="ICR_LOG_FORMAT")  # or "json"
    log_level: str = Field(default="info", validation_alias="ICR_LOG_LEVEL")

    @property
    def embedded_allowed(self) -> bool:
        """Whether an unset server variable means "start the embedded one": asked for
        (ICR_EMBEDDED=true), or the zero-configuration default of a developer's box."""
        if self.embedded is not None:
            return self.embedded
        return self.environment != "production" and not self.temporal_address and not self.database_url

    @property
    def codec_server_port(self) -> int:
        return self.codec_port or self.ui_port + 1

    @classmethod
    def from_env(cls) -> Settings:
        """From the process environment (variables named as in docs/deployment.md and
        docs/operations.md). A bad value is a ConfigurationError naming its variable (and the
        value, unless it is a secret), for every process alike."""
        try:
            return cls()
        except ValidationError as err:
            secret = {str(f.validation_alias) for f in cls.model_fields.values()
                      if SecretStr in getattr(f.annotation, "__args__", (f.annotation,))}
            problems = []
            for e in err.errors():
                variable = str(e["loc"][0]) if e["loc"] else "a setting"
                shown = "" if variable in secret else f"={e.get('input')!r}"
                problems.append(f"{variable}{shown}: {e['msg']}")
            raise ConfigurationError(f"bad setting: {'; '.join(problems)}") from None
