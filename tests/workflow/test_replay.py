"""Running certificates survive a release: every committed history (tests/histories/, one
per lifecycle branch, recorded by `python -m tests.histories.record`) replays against the
current workflow code, and issues every activity and timer again with the same input and
duration (tests/replay_gate.py). A change that alters the commands a certificate issues, or
what they carry (an id, a date, an amount), fails here; see docs/reliability.md, "Changing
the workflow safely"."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from icr.domain.rules import transitions
from tests.histories.record import BRANCHES, CONTINUED_AS_NEW, SHORT_HISTORY_PREFIX
from tests.replay_gate import replay_failures
from tests.short_history import ShortHistoryCertificateWorkflow
from workflows.certificate import CertificateWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def test_every_branch_has_a_committed_history() -> None:
    names = {f.name.removeprefix(SHORT_HISTORY_PREFIX).split(".")[0] for f in FILES}
    assert names == {*BRANCHES, *CONTINUED_AS_NEW}
    # The branch that continued as new has each of its runs (the first ends in continue-as-new).
    runs = [f for f in FILES if f.name.startswith(SHORT_HISTORY_PREFIX)]
    assert len(runs) >= 2


def workflow_id_of(history_json: str) -> str:
    """The workflow id the history was recorded under (the workflow checks it): from the case
    reference in its start input."""
    started = json.loads(history_json)["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    return f"certificate-{payload['case_reference']}"


def committed(path: Path) -> tuple[WorkflowHistory, type]:
    workflow = ShortHistoryCertificateWorkflow if path.name.startswith(SHORT_HISTORY_PREFIX) else CertificateWorkflow
    text = path.read_text(encoding="utf-8")
    return WorkflowHistory.from_json(workflow_id_of(text), text), workflow


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_a_committed_history_replays_against_the_current_code(path: Path) -> None:
    history, workflow = committed(path)
    problems = await replay_failures(history, workflow)
    assert problems == [], f"{path.name}:\n" + "\n".join(problems)


async def test_the_gate_sees_a_rule_that_changes_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal's replay alone passes a change to how a notification id is formed; the gate
    does not."""
    history, workflow = committed(HISTORIES / "case_ongoing.json")
    monkeypatch.setattr(transitions, "notification_id", lambda case_reference, n: f"N-{case_reference}-{n}")
    assert await replay_failures(history, workflow, check_inputs=False) == []
    problems = await replay_failures(history, workflow)
    assert any("activity raise_notification" in p and ".notification_id: recorded" in p for p in problems), problems
    # Every step that carries the id, the response's among them.
    assert any("activity record_response" in p for p in problems), problems


async def test_the_gate_sees_a_rule_that_changes_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines a second earlier move the notification's dates and the timers the certificate
    waits on (earlier, so that every timer still fires past its deadline: the same commands)."""
    history, workflow = committed(HISTORIES / "contact_reassigned.json")
    deadline = transitions.extended_deadline
    monkeypatch.setattr(transitions, "extended_deadline",
                        lambda *args: (lambda found: (found[0] - timedelta(seconds=1), found[1]))(deadline(*args)))
    assert await replay_failures(history, workflow, check_inputs=False) == []
    problems = await replay_failures(history, workflow)
    assert any("timer" in p and "duration: recorded" in p for p in problems), problems
    assert any("activity raise_notification" in p and ".due_date: recorded" in p for p in problems), problems
