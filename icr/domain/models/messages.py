"""Inbound messages: the public contract other systems call (input, signals, updates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SerializerFunctionWrapHandler, model_serializer, model_validator

from icr.domain.models.base import Model
from icr.domain.models.vocabulary import Decision, IcrStage, Response


class CertificateInput(Model):
    """Workflow input: `{"case_reference": "300001416143"}`, all an outside caller may pass.

    Both fields are `Any` on purpose: a payload the decoder refused would fail every workflow
    task of that id, for good, so any JSON value decodes here and the workflow checks it
    itself, ending a start it cannot use with a clear failure (see `CertificateWorkflow.run`).
    """

    case_reference: Any = None
    # The engine's own, set on continue-as-new and accepted only from it (a `CarriedState`).
    carried: Any = None

    @model_validator(mode="before")
    @classmethod
    def _any_json_value(cls, value: Any) -> Any:
        # Not an object (a bare number, a list, null): kept as the case reference, which the
        # workflow then refuses with its usual message.
        return value if isinstance(value, dict) else {"case_reference": value}

    @model_serializer(mode="wrap")
    def _without_carried(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # The Web UI shows the start input as sent: a plain start shows only the case
        # reference, not the engine's carried state when there is none.
        data: dict[str, object] = handler(self)
        if data.get("carried") is None:
            data.pop("carried", None)
        return data


class ActivityEvent(Model):
    """`record_activity` signal: a qualifying action reported by an activity source.

    `kind` is a plain string (not the enum) so that an unknown kind reaches the rules and is
    refused with a clear reason instead of being dropped by the payload decoder."""

    # Defaults only so that a payload missing a field still decodes and is refused by the
    # rules with a clear, audited reason, instead of being dropped by the decoder.
    event_id: str = ""
    kind: str = ""
    occurred_at: datetime | None = None
    source: str | None = None


class RespondRequest(Model):
    """`respond` update: the provider's answer to the open notification."""

    # Defaults only so that a missing field is refused with a clear error by the rules.
    user_login_id: str = ""
    response: str = ""
    message: str | None = None
    # The notification answered: one that is no longer the open one is refused (a stale form
    # never answers a newer notification of the same certificate). None: the open one.
    notification_id: str | None = None


class RespondResult(Model):
    notification_id: str
    response: Response
    outcome: str
    stage: IcrStage


class LaaDecisionRequest(Model):
    """`laa_decision` signal from a caseworker."""

    caseworker: str = ""
    decision: str = ""
    reason: str = ""
    # The task decided: a decision naming a task that is no longer the open one is refused.
    task_id: str | None = None


class DecideResult(Model):
    """The answer to the `decide` update: the task decided and where the certificate is now."""

    task_id: str
    decision: Decision
    stage: IcrStage


class ReassignContactRequest(Model):
    """`reassign_contact` update from a Cross Office user."""

    user_login_id: str = ""
    new_contact_login_id: str = ""


class ReassignContactResult(Model):
    case_reference: str
    provider_contact_login: str


class CloseCertificateRequest(Model):
    """`close_certificate` signal: discharged or closed elsewhere.

    Both fields are required by the rules; the defaults only let a payload missing one
    decode, so that it is refused with an audited reason instead of dropped by the decoder.
    `system` names the system that sent it (as it says: Temporal does not tell a workflow who
    signalled it), recorded as the actor in the audit log."""

    reason: str = ""
    occurred_at: datetime | None = None
    system: str | None = None


@dataclass(frozen=True)
class Undecodable:
    """What a worker hands the workflow, in place of a message, for a payload it could not
    decode (encrypted with a key it does not have, failed authentication, not JSON, not the
    message's shape): the workflow refuses it instead of failing on it. Never sent; `reason`
    says why in a line, without the payload's content."""

    reason: str
