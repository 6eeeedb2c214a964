"""The search attributes of the public contract: the Web UI's list filters, declared once.

Each key carries its name and its type; the dev server's `--search-attribute NAME=TYPE`
flags and the registration on a real namespace are derived from these keys.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

ICR_STAGE = SearchAttributeKey.for_keyword("IcrStage")
CASE_REFERENCE = SearchAttributeKey.for_keyword("CaseReference")
PROVIDER_FIRM_ID = SearchAttributeKey.for_keyword("ProviderFirmId")
INACTIVITY_DEADLINE = SearchAttributeKey.for_datetime("InactivityDeadline")
RESPONSE_DUE_DATE = SearchAttributeKey.for_datetime("ResponseDueDate")
NOTIFICATION_CYCLE = SearchAttributeKey.for_int("NotificationCycle")
POLICY_VERSION = SearchAttributeKey.for_int("PolicyVersion")
# The open LAA task's kind (absent when none): one list filter per caseworker queue. A Keyword:
# the dev server's SQL visibility has plenty of those, and few Int or Datetime slots.
OPEN_TASK_KIND = SearchAttributeKey.for_keyword("OpenTaskKind")

SEARCH_ATTRIBUTES: dict[str, SearchAttributeKey[Any]] = {
    key.name: key for key in (ICR_STAGE, CASE_REFERENCE, PROVIDER_FIRM_ID, INACTIVITY_DEADLINE,
                              RESPONSE_DUE_DATE, NOTIFICATION_CYCLE, POLICY_VERSION, OPEN_TASK_KIND)
}

# The type names the `temporal` CLI takes.
_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.INT: "Int",
}


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """The key's type as `temporal server start-dev --search-attribute NAME=TYPE` takes it."""
    return _CLI_TYPE_NAMES[key.indexed_value_type]
