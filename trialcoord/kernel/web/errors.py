"""The one place where errors become HTTP responses.

API paths get RFC 9457 problem details; pages get a friendly HTML page. Forms catch their own
InvalidInput/Conflict to re-render with the message next to the field (see `field_messages`).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Template

from trialcoord.kernel.problems import Conflict, Forbidden, InvalidInput, NotConfigured, NotFound, Problem

PROBLEM_JSON = "application/problem+json"
API_PREFIX = "/api"
log = logging.getLogger(__name__)


class FieldError(msgspec.Struct):
    field: str
    message: str
    line: int | None = None
    column: int | None = None


class ProblemDetails(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for a route's error statuses, so every status it can return is documented."""
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(code).phrase,
            generate_examples=False,
        )
        for code in codes
    }


def problem_for(exc: Exception) -> ProblemDetails:
    if isinstance(exc, InvalidInput):
        return _problem(422, "The input has problems to fix", [_from_problem(p) for p in exc.problems])
    if isinstance(exc, NotFound):
        return _problem(404, str(exc))
    if isinstance(exc, Conflict):
        return _problem(409, str(exc), [FieldError(exc.field, str(exc))] if exc.field else None)
    if isinstance(exc, Forbidden):
        return _problem(403, str(exc))
    if isinstance(exc, NotConfigured):
        log.error("%s", exc)  # the message names a setting, never data
        return _problem(503, str(exc))
    if isinstance(exc, ValidationException):
        return _problem(400, "The request is malformed", _from_validation(exc.extra))
    if isinstance(exc, HTTPException):
        return _problem(exc.status_code, exc.detail)
    log.exception("unhandled error", exc_info=exc)
    return _problem(500, "Something went wrong on our side; the error was logged")


def field_messages(exc: Exception) -> dict[str, str]:
    """For forms: field -> message ('' holds messages that name no field)."""
    problem = problem_for(exc)
    messages: dict[str, str] = {}
    for error in problem.errors or [FieldError("", problem.detail)]:
        key = error.field
        messages[key] = f"{messages[key]} {error.message}" if key in messages else error.message
    return messages


def handle(request: Request, exc: Exception) -> Response:
    problem = problem_for(exc)
    headers = (exc.headers if isinstance(exc, HTTPException) else None) or {}  # such as Allow on a 405
    if request.url.path.startswith((API_PREFIX, "/schema")):
        return Response(problem, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)
    if problem.status == 401:  # a page: the sign-in form, coming back here afterwards
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        context = {"next": target if request.method == "GET" else "/", "error": problem.detail, "user_id": ""}
        return Template("sign_in.html", context=context, status_code=401)
    return Template("error.html", context={"problem": problem}, status_code=problem.status, headers=headers)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    InvalidInput: handle,
    NotFound: handle,
    Conflict: handle,
    Forbidden: handle,
    NotConfigured: handle,
    HTTPException: handle,
    500: handle,
}


def _problem(status: int, detail: str, errors: list[FieldError] | None = None) -> ProblemDetails:
    phrase = HTTPStatus(status).phrase
    slug = phrase.lower().replace(" ", "-")
    return ProblemDetails(f"/problems/{slug}", phrase, status, detail, errors or [])


def _from_problem(problem: Problem) -> FieldError:
    return FieldError(problem.field, problem.message, problem.line, problem.column)


def _from_validation(extra: Any) -> list[FieldError]:
    """Litestar's messages look like {"key": "as_of", "message": ..., "source": "query"}; for a body the
    key is "data" and msgspec names the field inside the message."""
    if not isinstance(extra, list):
        return []
    errors = []
    for item in extra:
        if isinstance(item, dict):
            key, message = str(item.get("key", "")), str(item.get("message", ""))
            if key in ("data", "") and (found := _BODY_FIELD.search(message)):
                key = next(group for group in found.groups() if group)
            errors.append(FieldError(key, message))
    return errors


# msgspec: "Expected `str`, got `int` - at `$.arm`", "Object missing required field `code`", and
# our own checks: "`date` must be ..."
_BODY_FIELD = re.compile(r"at `\$\.([^`\[]+)|required field `([^`]+)`|^`([^`]+)` must")
