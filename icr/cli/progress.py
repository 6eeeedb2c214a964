"""A progress bar for roll-outs and imports, on stderr: done / total, the rate and the time left."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from icr.services.rollout import RolloutProgress


class Progress(Protocol):
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def per_second(self) -> float: ...
    @property
    def seconds_left(self) -> float | None: ...
    @property
    def finished(self) -> bool: ...


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressBar:
    """Redrawn in place on a terminal (at most 10 times a second); elsewhere (a log file) one
    line every `every` seconds, and always the last."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, every: float = 5.0,
                 label: str | None = None) -> None:
        self.label = label  # unset: the roll-out's id
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every
        self.last = 0.0

    def line(self, p: Progress) -> str:
        share = p.done / p.total if p.total else 1.0
        filled = int(self.width * share)
        left = "done" if p.finished else f"{_duration(p.seconds_left)} left"
        label = self.label or (f"roll-out {p.rollout_id}" if isinstance(p, RolloutProgress) else "")
        return (f"{label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{p.done}/{p.total} {share:4.0%}  {p.per_second:.1f}/s  {left}")

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not p.finished and now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r" + self.line(p).ljust(78) + ("\n" if p.finished else ""))
        else:
            self.stream.write(self.line(p) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line drawn in place (after an interruption)."""
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
