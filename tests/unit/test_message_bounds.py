"""Every string a message carries is bounded before the workflow holds it: a pending message
waits in memory and in the state carried across continue-as-new, whose payload the server
caps. A field added to a message later is covered here without being named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from icr.domain.models import ActivityEvent, CloseCertificateRequest, LaaDecisionRequest
from icr.domain.rules import bound_close, bound_decision, bound_event

HUGE = "x" * 3_000_000
# The most any bounded field keeps: its limit (at most REASON_MAX_CHARS) plus one character,
# so that the check still refuses it as too long.
KEPT_AT_MOST = 2_001


def string_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if "str" in str(field.annotation)]


@pytest.mark.parametrize(("model", "bound"), [
    (ActivityEvent, bound_event), (LaaDecisionRequest, bound_decision), (CloseCertificateRequest, bound_close)],
    ids=["record_activity", "laa_decision", "close_certificate"])
def test_every_string_of_a_held_message_is_bounded(model: type[BaseModel], bound: Callable[[Any], Any]) -> None:
    fields = string_fields(model)
    assert fields, model
    bounded = bound(model(**dict.fromkeys(fields, HUGE)))
    kept = {name: len(getattr(bounded, name)) for name in fields}
    assert all(n <= KEPT_AT_MOST for n in kept.values()), kept


def test_a_bounded_field_keeps_one_character_over_its_limit_so_the_check_still_refuses_it() -> None:
    request = bound_decision(LaaDecisionRequest(caseworker="CW", decision="close", task_id="T" * 500))
    assert request.task_id == "T" * 101
    close = bound_close(CloseCertificateRequest(reason="r", system="S" * 500))
    assert close.system == "S" * 101
