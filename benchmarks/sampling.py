"""Where a worker's Python time goes during a benchmark phase: the worker sampled by py-spy,
summed into a few named parts.

Every thread is sampled (the workflow activations run in a thread pool, which cProfile on the
main thread misses), but only while it holds the GIL (`--gil`): a thread waiting for the GIL
is not using the CPU. The SDK's core (Rust: gRPC, protobuf) is not in these samples."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

RATE = 100  # samples a second: enough for a phase of 20 s, light on a busy 2-core machine

# Each part is named by frames that mark it; a sample counts for the first part whose frame is
# on its stack (the SDK asks the sandbox for a payload's serialization context while it
# encodes a completion, so that part comes before the encoding's).
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("sdk: serialization context per payload (a call into the sandbox)",
     ("get_serialization_context", "get_external_store_context")),
    ("sdk: payload encoding and decoding (incl. the engine's encryption)",
     ("encode_completion", "decode_activation", "EncryptionCodec")),
    ("workflow code (activations in the sandbox)", ("_Instance.activate",)),
    ("steps (activities, PostgreSQL)", ("_ActivityWorker._handle_start_activity_task",)),
    ("logging", ("structlog", "logging/__init__.py")),
]
# A thread waiting in the kernel: py-spy can report these even with --gil; dropped here.
IDLE_LEAVES = ("EpollSelector.select", "_worker (concurrent/futures/thread.py:81)")


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("--sample-worker needs py-spy (installed with the project's test extra)")
    return found


class WorkerSampler:
    """py-spy recording one process until stopped; the folded stacks go to `path`."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid, self.path = pid, path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            py_spy(), "record", "--pid", str(self.pid), "--rate", str(RATE), "--format", "raw",
            "--nonblocking", "--gil", "--output", str(self.path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> dict[str, object]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        await asyncio.wait_for(self.proc.wait(), 60)
        return summarize(self.path)


def summarize(folded: Path) -> dict[str, object]:
    """Shares of the busy samples (%) by part, from py-spy's raw (folded) output."""
    busy = 0
    parts: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or frames[-1].startswith(IDLE_LEAVES):
            continue
        n = int(count)
        busy += n
        part = next((name for name, marks in PARTS if any(m in stack for m in marks)), "other")
        parts[part] += n
    shares = {name: round(100 * parts[name] / busy, 1) if busy else 0.0 for name, _ in PARTS + [("other", ())]}
    return {"busy_samples": busy, "rate_per_s": RATE, "share_pct": shares}
