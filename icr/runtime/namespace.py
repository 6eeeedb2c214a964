"""The engine's things in the Temporal namespace: the contract's search attributes and the daily
digest's schedule.

Registering them needs admin rights on the namespace (on Temporal Cloud, search attributes are
managed outside the namespace's API altogether), so `starter.py setup` does it once; the engine
also does it on the embedded dev server it owns. Workers and the other commands only check,
with the rights they have, and where something is missing name the command that adds it.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from icr.runtime.settings import ConfigurationError
from workflows.digest import DIGEST_WORKFLOW_ID, DailyDigestWorkflow
from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type

log = structlog.get_logger(__name__)

# The daily digest runs at 07:00 UK time.
DIGEST_CRON = "0 7 * * *"
DIGEST_TIME_ZONE = "Europe/London"
SETUP_COMMAND = "starter.py setup"
# Statuses that mean "you may not do or see this here", not "the server is broken".
_NOT_ALLOWED = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)


# --- what to run ---------------------------------------------------------------------------


def create_commands(namespace: str, names: list[str]) -> list[str]:
    """The `temporal` CLI commands that register these attributes (self-hosted Temporal)."""
    return [f"temporal operator search-attribute create --namespace {namespace} --name {name} "
            f"--type {cli_type(SEARCH_ATTRIBUTES[name])}" for name in names]


def cloud_commands(namespace: str, names: list[str]) -> list[str]:
    """The `tcld` commands that register them on Temporal Cloud (namespace id `name.account`)."""
    return [f"tcld namespace search-attributes add --namespace {namespace} "
            f"--search-attribute {name}={cli_type(SEARCH_ATTRIBUTES[name])}" for name in names]


def how_to_register(namespace: str, names: list[str], *, with_setup: bool = True) -> str:
    """The commands that register these attributes, as an error message lists them."""
    first = f"with admin rights: `{SETUP_COMMAND}`, or" if with_setup else "with admin rights:"
    return "\n".join([first, *(f"  {c}" for c in create_commands(namespace, names)),
                      "or on Temporal Cloud:", *(f"  {c}" for c in cloud_commands(namespace, names))])


# --- search attributes -----------------------------------------------------------------------


def _type_of(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(key.indexed_value_type.value)


async def _listed(client: Client, namespace: str) -> dict[str, IndexedValueType.ValueType] | None:
    """The namespace's custom search attributes and their types; None when this client may not
    list them (least privilege, Temporal Cloud) or the server cannot (the time-skipping server)."""
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError as err:
        if err.status not in _NOT_ALLOWED:
            raise
        return None
    return dict(listed.custom_attributes)


# A value of each type for a visibility query that only has to be valid.
_PROBE_VALUES = {
    SearchAttributeIndexedValueType.KEYWORD: "'-'",
    SearchAttributeIndexedValueType.INT: "0",
    SearchAttributeIndexedValueType.DATETIME: "'2000-01-01T00:00:00Z'",
}


async def _unknown_to_visibility(client: Client) -> list[str] | None:
    """The attributes a visibility query refuses (needs only read rights); None when this
    client may not query visibility either, or the server has none."""
    unknown = []
    for name, key in SEARCH_ATTRIBUTES.items():
        try:
            await client.count_workflows(f"{name} = {_PROBE_VALUES[key.indexed_value_type]}")
        except RPCError as err:
            if err.status in _NOT_ALLOWED:
                return None
            if err.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
            unknown.append(name)
    return unknown


def _wrong(known: dict[str, IndexedValueType.ValueType]) -> tuple[list[str], list[str]]:
    """(missing, of another type) among the contract's attributes."""
    missing = [name for name in SEARCH_ATTRIBUTES if name not in known]
    mistyped = [name for name, key in SEARCH_ATTRIBUTES.items() if name in known and known[name] != _type_of(key)]
    return missing, mistyped


async def check_search_attributes(client: Client, namespace: str) -> None:
    """Make sure the namespace has the contract's search attributes, without changing it: a
    workflow that sets an unknown one fails every workflow task, silently. Raises
    ConfigurationError naming the missing ones and the commands that add them; when this client
    may neither list them nor query visibility, warns with those commands and carries on."""
    known = await _listed(client, namespace)
    if known is not None:
        missing, mistyped = _wrong(known)
        if mistyped:
            raise ConfigurationError(
                f"search attribute(s) {', '.join(mistyped)} exist in namespace {namespace!r} with another type "
                f"than the engine's ({', '.join(f'{n}={cli_type(SEARCH_ATTRIBUTES[n])}' for n in mistyped)}); "
                "a search attribute's type cannot change: ask the namespace's admin")
    else:
        unknown = await _unknown_to_visibility(client)
        if unknown is None:
            names = list(SEARCH_ATTRIBUTES)
            log.warning("search_attributes_unchecked", namespace=namespace,
                        reason="this client may neither list search attributes nor query visibility",
                        fix=SETUP_COMMAND, commands=create_commands(namespace, names),
                        cloud_commands=cloud_commands(namespace, names))
            return
        missing = unknown
    if missing:
        raise ConfigurationError(
            f"namespace {namespace!r} lacks search attribute(s) {', '.join(missing)}: workflows that set them "
            f"would fail. Register them once, {how_to_register(namespace, missing)}")


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the contract's search attributes that the namespace lacks (admin rights); the
    names added. Tolerates a server that cannot list them (the time-skipping test server) and
    attributes added meanwhile by another process."""
    known = await _listed(client, namespace)
    if known is not None:
        _, mistyped = _wrong(known)
        if mistyped:
            await check_search_attributes(client, namespace)  # raises, saying which and why
    added = []
    for name, key in SEARCH_ATTRIBUTES.items():
        if known is not None and name in known:
            continue
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=namespace, search_attributes={name: _type_of(key)}))
            added.append(name)
        except RPCError as err:
            if err.status == RPCStatusCode.ALREADY_EXISTS or "already exists" in str(err).lower():
                continue
            if err.status in _NOT_ALLOWED:
                names = [n for n in SEARCH_ATTRIBUTES if known is None or n not in known]
                raise ConfigurationError(
                    f"this client may not add search attributes to namespace {namespace!r} ({err.message}); "
                    f"register them {how_to_register(namespace, names, with_setup=False)}") from None
            raise
    if added:
        log.info("search_attributes_registered", names=added)
    return added


# --- the daily digest's schedule --------------------------------------------------------------


def digest_schedule(task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(DailyDigestWorkflow.run, id=DIGEST_WORKFLOW_ID, task_queue=task_queue),
        spec=ScheduleSpec(cron_expressions=[DIGEST_CRON], time_zone_name=DIGEST_TIME_ZONE),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))


async def register_digest_schedule(client: Client, task_queue: str) -> bool:
    """Create the daily digest's schedule unless it exists; whether it was created. The
    time-skipping test server has no schedules: False there."""
    try:
        await client.create_schedule(DIGEST_WORKFLOW_ID, digest_schedule(task_queue))
    except ScheduleAlreadyRunningError:
        return False
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        log.warning("digest_schedule_unavailable", reason="the server does not offer schedules")
        return False
    log.info("digest_schedule_created", schedule_id=DIGEST_WORKFLOW_ID)
    return True


async def check_digest_schedule(client: Client) -> bool:
    """Whether the daily digest's schedule exists; a missing one is logged with the command that
    creates it (the worker still serves the certificates). True when this client may not look."""
    try:
        await client.get_schedule_handle(DIGEST_WORKFLOW_ID).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            log.warning("digest_schedule_missing", schedule_id=DIGEST_WORKFLOW_ID,
                        reason="no daily digest e-mails are sent", fix=f"run `{SETUP_COMMAND}` once")
            return False
        if err.status not in _NOT_ALLOWED:
            raise
        log.info("digest_schedule_unchecked", schedule_id=DIGEST_WORKFLOW_ID, reason=err.message)
    return True
