"""The search attributes of the public contract: the Web UI's list filters."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

SEARCH_ATTRIBUTES: dict[str, SearchAttributeKey[Any]] = {
    "IcrStage": SearchAttributeKey.for_keyword("IcrStage"),
    "CaseReference": SearchAttributeKey.for_keyword("CaseReference"),
    "ProviderFirmId": SearchAttributeKey.for_keyword("ProviderFirmId"),
    "InactivityDeadline": SearchAttributeKey.for_datetime("InactivityDeadline"),
    "ResponseDueDate": SearchAttributeKey.for_datetime("ResponseDueDate"),
    "NotificationCycle": SearchAttributeKey.for_int("NotificationCycle"),
    "PolicyVersion": SearchAttributeKey.for_int("PolicyVersion"),
}

# For `temporal server start-dev --search-attribute NAME=TYPE`.
CLI_TYPES: dict[str, str] = {
    "IcrStage": "Keyword",
    "CaseReference": "Keyword",
    "ProviderFirmId": "Keyword",
    "InactivityDeadline": "Datetime",
    "ResponseDueDate": "Datetime",
    "NotificationCycle": "Int",
    "PolicyVersion": "Int",
}
