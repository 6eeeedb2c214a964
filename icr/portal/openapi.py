"""The provider API's OpenAPI document, built from its models (icr/portal/schema.py).

Served at /openapi.json and committed as icr/portal/openapi.json (a test checks that they are
the same). After changing the API, write it again with:

    .venv/bin/python -m icr.portal.openapi > icr/portal/openapi.json
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from icr.portal.schema import (
    NotificationEnvelope,
    NotificationsPage,
    NotificationSummary,
    Problem,
    ResponseAnswer,
    ResponseBody,
)

REF = "#/components/schemas/{model}"


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return dict(sorted(found.items()))


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(Problem, description)


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_UNAUTHENTICATED = _problem("not signed in (no bearer token the OpenID provider accepts, no session)")


def openapi_document() -> dict[str, Any]:
    notification_id = {"name": "notification-id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Inactive Case Review: provider notifications API",
            "version": "1",
            "description": "A provider firm's inactive case review notifications, shaped like the LAA's "
                           "notifications API, and their answers through the engine. Every request is made "
                           "for a signed-in user: an OpenID Connect access token as a bearer token, or the "
                           "portal's session cookie (then a POST carries the session's X-CSRF-Token). The "
                           "user's firm and roles come from the engine's user directory.",
        },
        "components": {
            "schemas": _schemas(NotificationsPage, NotificationEnvelope, NotificationSummary, ResponseBody,
                                ResponseAnswer, Problem),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "icr_portal_session"}},
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/notifications": {"get": {
                "summary": "A page of the firm's notifications",
                "parameters": [
                    _query("provider-id", "the signed-in user's provider firm id", {"type": "string"}, True),
                    _query("case-reference-number", "one certificate's", {"type": "string"}),
                    _query("assigned-to-user-id", "those assigned to this login id", {"type": "string"}),
                    _query("include-closed", "closed ones too", {"type": "boolean", "default": True}),
                    _query("date-from", "assigned on or after (UK date)", {"type": "string", "format": "date"}),
                    _query("date-to", "assigned on or before (UK date)", {"type": "string", "format": "date"}),
                    _query("page", "page number, from 0", {"type": "integer", "minimum": 0, "default": 0}),
                    _query("size", "page size", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
                    _query("sort", "FIELD or FIELD,asc|desc; FIELD: assign_date (default, desc), due_date, "
                                   "case_reference_number", {"type": "string"}),
                ],
                "responses": {"200": _json(NotificationsPage, "the page"),
                              "400": _problem("a parameter is missing or not valid"),
                              "401": _UNAUTHENTICATED, "403": _problem("provider-id is not the user's firm")},
            }},
            "/notifications/{notification-id}": {"get": {
                "summary": "One notification, with its letter and the responses the user may give now",
                "parameters": [notification_id],
                "responses": {"200": _json(NotificationEnvelope, "the notification"), "401": _UNAUTHENTICATED,
                              "403": _problem("another firm's notification"), "404": _problem("no such notification")},
            }},
            "/notifications/{notification-id}/response": {"post": {
                "summary": "Answer the notification through the engine's respond update",
                "parameters": [notification_id, {
                    "name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string"},
                    "description": "the same key again (a retry after a timeout) gets the first answer"}],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": {"$ref": REF.format(model="ResponseBody")}}}},
                "responses": {
                    "200": _json(ResponseAnswer, "answered"),
                    "400": _problem("no Idempotency-Key, or a body that is not the expected JSON"),
                    "401": _UNAUTHENTICATED,
                    "403": _problem("another firm's notification, or a session request without its X-CSRF-Token"),
                    "404": _problem("no such notification"),
                    "409": _problem("refused by the engine for the notification's state or who may answer it "
                                    "(code: not_assigned, not_permitted, pre_silas_login, notification_returned, "
                                    "stale_notification, no_open_notification, notification_closed, ...)"),
                    "422": _problem("refused by the engine for what was sent (code: missing_response, "
                                    "unknown_response, message_too_long, invalid_message)"),
                    "503": _problem("the engine did not answer in time: send it again with the same key"),
                },
            }},
            "/users/{login-id}/notifications/summary": {"get": {
                "summary": "How many open notifications are assigned to a user of the firm, and how many are overdue",
                "parameters": [{"name": "login-id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(NotificationSummary, "the counts"), "401": _UNAUTHENTICATED,
                              "403": _problem("not a user of the signed-in user's firm")},
            }},
        },
    }


def document_text() -> str:
    return json.dumps(openapi_document(), indent=2) + "\n"


if __name__ == "__main__":
    print(document_text(), end="")
