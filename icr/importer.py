"""Loading the registry from CSV files (`starter.py import ...`). See contract.md.

INTERFACE (to be implemented):

class ImportFileError(Exception): the whole file is refused (unreadable, not UTF-8, no header,
    a missing required column). Its message names the file and the problem.

@dataclass
class RowError: line (1-based physical line number in the file, header is line 1), column, reason.

@dataclass
class ImportReport: kind ("users" | "certificates" | "exercise-responses"), imported, updated,
    unchanged, refused: list[RowError], workflows_started: int, workflows_signalled: int;
    def summary(self) -> str  (one line: "certificates: 3 imported, 1 updated, 2 unchanged, 1 refused; 3 workflows started")
    def ok -> bool (no refused rows)

async def import_users(store: Store, path: Path, *, actor: str, now: datetime) -> ImportReport
async def import_certificates(store: Store, client: Client, path: Path, *, actor: str, now: datetime,
                              task_queue: str) -> ImportReport
async def import_exercise_responses(store: Store, client: Client | None, path: Path, *, actor: str,
                                    now: datetime, task_queue: str) -> ImportReport
"""
