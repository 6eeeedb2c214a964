"""Running certificates survive a release: every committed history (tests/histories/, one
per lifecycle branch, recorded by `python -m tests.histories.record`) replays against the
current workflow code. A change that alters the commands a certificate issues fails here;
see docs/reliability.md, "Changing the workflow safely"."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.histories.record import BRANCHES, CONTINUED_AS_NEW, SHORT_HISTORY_PREFIX
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


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_a_committed_history_replays_against_the_current_code(path: Path) -> None:
    workflow = ShortHistoryCertificateWorkflow if path.name.startswith(SHORT_HISTORY_PREFIX) else CertificateWorkflow
    text = path.read_text(encoding="utf-8")
    history = WorkflowHistory.from_json(workflow_id_of(text), text)
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
