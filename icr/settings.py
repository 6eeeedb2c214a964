"""Configuration, read once from the environment at the edge (worker.py, starter.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, SecretStr

TASK_QUEUE = "inactive-case-review"
ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseModel):
    # Unset: the engine starts the Temporal dev server (with the Web UI) itself.
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_api_key: str | None = None
    temporal_tls: bool = False
    temporal_tls_ca_cert: Path | None = None
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    # Unset: the engine starts embedded PostgreSQL in the data directory.
    database_url: str | None = None
    data_dir: Path = ROOT / ".data"
    task_queue: str = TASK_QUEUE
    temporal_port: int = 7233
    ui_port: int = 8233
    max_concurrent_activities: int = 100
    max_concurrent_workflow_tasks: int = 100
    db_pool_size: int = 10
    log_format: str = "console"  # or "json"
    log_level: str = "info"
    # The daily digest e-mail. Unset smtp_host: a worker delivers into a local SMTP sink
    # under the data directory instead (`starter.py mail list` shows what was sent).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None  # never logged
    smtp_timeout: float = 30.0
    mail_from: str = "Legal Aid Agency <icr-noreply@icr.local>"
    portal_url: str = "https://provider-portal.example/inactive-case-review"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        names = {
            "TEMPORAL_ADDRESS": "temporal_address",
            "TEMPORAL_NAMESPACE": "temporal_namespace",
            "TEMPORAL_API_KEY": "temporal_api_key",
            "TEMPORAL_TLS": "temporal_tls",
            "TEMPORAL_TLS_CA_CERT": "temporal_tls_ca_cert",
            "TEMPORAL_TLS_CLIENT_CERT": "temporal_tls_client_cert",
            "TEMPORAL_TLS_CLIENT_KEY": "temporal_tls_client_key",
            "DATABASE_URL": "database_url",
            "ICR_DATA_DIR": "data_dir",
            "ICR_TASK_QUEUE": "task_queue",
            "ICR_TEMPORAL_PORT": "temporal_port",
            "ICR_UI_PORT": "ui_port",
            "ICR_MAX_CONCURRENT_ACTIVITIES": "max_concurrent_activities",
            "ICR_MAX_CONCURRENT_WORKFLOW_TASKS": "max_concurrent_workflow_tasks",
            "ICR_DB_POOL_SIZE": "db_pool_size",
            "ICR_LOG_FORMAT": "log_format",
            "ICR_LOG_LEVEL": "log_level",
            "ICR_SMTP_HOST": "smtp_host",
            "ICR_SMTP_PORT": "smtp_port",
            "ICR_SMTP_STARTTLS": "smtp_starttls",
            "ICR_SMTP_USERNAME": "smtp_username",
            "ICR_SMTP_PASSWORD": "smtp_password",
            "ICR_SMTP_TIMEOUT": "smtp_timeout",
            "ICR_MAIL_FROM": "mail_from",
            "ICR_PORTAL_URL": "portal_url",
        }
        values = {field: env[name] for name, field in names.items() if env.get(name)}
        return cls.model_validate(values)
