"""Every error the HTTP API returns has one JSON shape::

    {"error": {"code": "validation_failed", "message": "...",
               "issues": [{"field": "address.city", "code": "too_long", "message": "..."}]}}

:func:`error_response` turns any exception — crmkit's own, Litestar's, or a bug — into that
shape, so exception handlers and the idempotency store (which keeps first responses, errors
included) produce the same bytes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from crmkit.errors import ConfigError, ConflictError, CRMError, FieldIssue, NotFound, PluginError, ValidationFailed

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with a stable code, raised by the API layer itself."""

    def __init__(self, status: int, code: str, message: str, issues: Iterable[FieldIssue] = (),
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.issues = list(issues)
        self.headers = dict(headers or {})


def bad_request(field: str, code: str, message: str) -> ApiError:
    """A 400 naming the query parameter or header at fault."""
    return ApiError(400, "invalid_request", f"{field}: {message}", [FieldIssue(field, code, message)])


def error_body(code: str, message: str, issues: Iterable[FieldIssue] = ()) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "issues": [issue.as_dict() for issue in issues]}}


def error_response(exc: BaseException) -> Response[Any]:
    """The API's response for ``exc``."""
    status, code, message, issues, headers = _describe(exc)
    return Response(error_body(code, message, issues), status_code=status, headers=headers)


def _describe(exc: BaseException) -> tuple[int, str, str, list[FieldIssue], dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.issues, exc.headers
    if isinstance(exc, ValidationFailed):
        return 422, "validation_failed", "the request was rejected; see issues", exc.issues, {}
    if isinstance(exc, NotFound):
        return 404, "not_found", str(exc), [], {}
    if isinstance(exc, ConflictError):
        return 409, "conflict", str(exc), [], {}
    if isinstance(exc, sa.exc.IntegrityError):
        # A unique or foreign-key constraint the service did not check first (or a race with
        # another writer): the request conflicts with what is stored. The database's own
        # message is not shown; it names tables and SQL.
        return 409, "conflict", "the request conflicts with a stored record (a value that must be unique is taken, "\
            "or a referenced record is gone)", [], {}
    if isinstance(exc, PluginError | ConfigError):
        log.error("request failed in crmkit: %s", exc, exc_info=exc)
        return 500, "server_error", str(exc), [], {}
    if isinstance(exc, CRMError):
        return 422, "rejected", str(exc), [], {}
    if isinstance(exc, ValidationException):
        # Litestar reports what it could not parse as {"key", "message", "source"} items.
        items = [item for item in exc.extra if isinstance(item, Mapping)] if isinstance(exc.extra, list) else []
        issues = [FieldIssue("body" if item.get("source") == "body" else str(item.get("key")), "invalid", str(item.get("message")))
                  for item in items]
        return 400, "invalid_request", "the request could not be read", issues, dict(exc.headers or {})
    if isinstance(exc, HTTPException):
        code = re.sub(r"\W+", "_", _PHRASES.get(exc.status_code, "error").lower())
        return exc.status_code, code, exc.detail or code.replace("_", " "), [], dict(exc.headers or {})
    log.error("unhandled error in an API request", exc_info=exc)
    return 500, "server_error", "internal server error (details are in the server log)", [], {}


_PHRASES = {400: "invalid request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
            406: "not acceptable", 413: "request too large", 415: "unsupported media type", 429: "too many requests"}


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The app's exception handler for every exception."""
    return error_response(exc)


#: The JSON Schema of every error body (see the module docstring).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "issues"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable: validation_failed, not_found, conflict …"},
                "message": {"type": "string", "description": "a sentence a person can act on"},
                "issues": {
                    "type": "array",
                    "description": "one entry per problem field (empty when the error is not about fields)",
                    "items": {
                        "type": "object",
                        "required": ["field", "code", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "field": {"type": "string", "description": "dotted path: email, address.city, stages[2].name"},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
