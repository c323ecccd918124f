"""The ONE table mapping engine exceptions to HTTP statuses, and the ONE error shape.

Every 4xx/5xx answer of the service has the body::

    {"error": {"status": 400, "code": "invalid_input", "field": "ra", "message": "...",
               "request_id": "..."},
     "msg": "...",            # the same message: TESScut clients read ``msg``
     "detail": ...}           # validation details, or null

Handlers never map exceptions themselves: they raise ``core.errors`` types and
:func:`install_error_handlers` registers one handler per entry of :data:`STATUS_BY_ERROR`.

Under :data:`DALI_TEXT_PREFIXES` (the IVOA SODA service) the same statuses carry the error
document IVOA DALI 1.1 and SODA 1.0 define instead: ``text/plain`` starting with the error's name
(``UsageError: ...``; the name from :data:`DALI_NAMES`, or the exception's ``dali_name``).
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    CorruptFileError,
    CutoutError,
    CutoutTimeoutError,
    ForbiddenError,
    InvalidInputError,
    MissingInputError,
    NoDataError,
    NotFoundError,
    NotSupportedError,
    QuotaError,
    TooLargeError,
    UnavailableError,
)

__all__ = [
    "DALI_NAMES",
    "DALI_TEXT_PREFIXES",
    "RETRY_AFTER_S",
    "STATUS_BY_ERROR",
    "PathScrubber",
    "error_body",
    "error_code",
    "error_response",
    "install_error_handlers",
    "request_id_of",
    "status_for",
]

log = logging.getLogger("app.errors")

#: engine exception class -> HTTP status (the only such table in the service)
STATUS_BY_ERROR: dict[type[CutoutError], int] = {
    InvalidInputError: 400,
    ForbiddenError: 403,
    NotFoundError: 404,
    MissingInputError: 404,  # also an InvalidInputError (astrocut's type): a missing file is still a 404
    NoDataError: 404,  # the TESScut routes answer 200 + {"msg"} instead, see routers/tesscut.py
    TooLargeError: 413,
    QuotaError: 429,
    CorruptFileError: 422,
    NotSupportedError: 422,
    UnavailableError: 503,
    CutoutTimeoutError: 504,
}

#: seconds a client is told to wait after a 503
RETRY_AFTER_S = 5

#: paths whose errors are DALI text documents (``UsageError: ...``), not the JSON shape
DALI_TEXT_PREFIXES = ("/soda/",)
#: HTTP status -> the SODA 1.0 / DALI error name that starts the text (others: ``Error``)
DALI_NAMES = {
    400: "UsageError", 401: "AuthenticationError", 403: "AuthorizationError", 404: "UsageError",
    405: "UsageError", 413: "UsageError", 503: "ServiceUnavailable", 504: "ServiceUnavailable",
}

_CODES_BY_STATUS = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "corrupt_file",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


def status_for(exc: BaseException) -> int:
    """The HTTP status of an engine exception (500 for anything not in the table)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 500


def error_code(exc: BaseException) -> str:
    """A short snake_case code from the exception class (``InvalidInputError`` -> ``invalid_input``)."""
    name = type(exc).__name__
    if name == "CutoutTimeoutError":
        return "timeout"
    name = re.sub(r"Error$", "", name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def request_id_of(request: Request) -> str:
    """The request id set by :class:`RequestIdMiddleware` (a fresh one if absent)."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = uuid.uuid4().hex
    return rid


def error_body(
    status: int, code: str, message: str, *, field: str | None, request_id: str, detail: Any = None
) -> dict[str, Any]:
    """The one JSON error shape."""
    return {
        "error": {
            "status": status,
            "code": code,
            "field": field,
            "message": message,
            "request_id": request_id,
        },
        "msg": message,
        "detail": detail,
    }


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    detail: Any = None,
    headers: dict[str, str] | None = None,
    dali_name: str | None = None,
) -> Response:
    """Build the error response (adds ``X-Request-ID`` and, for 503, ``Retry-After``); a DALI text
    document under :data:`DALI_TEXT_PREFIXES` (``dali_name`` overrides the status's name)."""
    rid = request_id_of(request)
    hdrs = {"X-Request-ID": rid, **(headers or {})}
    if status == 503:
        hdrs.setdefault("Retry-After", str(RETRY_AFTER_S))
    if request.url.path.startswith(DALI_TEXT_PREFIXES):
        name = dali_name or DALI_NAMES.get(status, "Error")
        where = f" ({field})" if field else ""
        return PlainTextResponse(f"{name}: {message}{where}\n", status_code=status, headers=hdrs)
    body = error_body(
        status,
        code or _CODES_BY_STATUS.get(status, "error"),
        message,
        field=field,
        request_id=rid,
        detail=detail,
    )
    return JSONResponse(body, status_code=status, headers=hdrs)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("query", "body", "path", "header", "cookie", "form")]
    parts = [p for p in parts if not p.isdigit()]
    return ".".join(parts) or None


#: longest echo of a client's value in an error body, characters
ECHO_CHARS = 120


def truncate(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked with an ellipsis and the full length)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _short(value: Any) -> Any:
    """A value of a validation error's detail with every echoed string truncated, and every number
    JSON cannot hold (NaN, Infinity: a JSON body may carry them) written as text."""
    if isinstance(value, str):
        return truncate(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in value[:10]]
    return value


class PathScrubber:
    """Removes the server's own directories from error messages: a user sees the names they gave
    (relative to a data root), never ``/srv/...`` or a temporary upload path."""

    def __init__(self, roots: list[str]) -> None:
        import os

        found = set()
        for root in roots:
            if root and "://" not in root:
                for form in (root, os.path.abspath(root), os.path.realpath(root)):
                    found.add(form.rstrip("/"))
        self.roots = sorted((r for r in found if r and r != "/"), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for root in self.roots:
            text = text.replace(root + "/", "").replace(root, "")
        return text


def _scrub(request: Request, text: str) -> str:
    scrub = getattr(request.app.state, "scrub_paths", None)
    return scrub(text) if scrub is not None else text


async def _cutout_error_handler(request: Request, exc: CutoutError) -> Response:
    status = status_for(exc)
    message = truncate(_scrub(request, exc.message), 4 * ECHO_CHARS)
    retry = getattr(exc, "retry_after_s", None)  # a quota: when to come back
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return error_response(request, status, message, code=error_code(exc), field=exc.field, headers=headers,
                          dali_name=getattr(exc, "dali_name", None))


async def _validation_handler(request: Request, exc: RequestValidationError) -> Response:
    errors = _short(jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
    first = errors[0] if errors else {}
    field = _field_of(first.get("loc", ()))
    msg = first.get("msg", "invalid request")
    if first.get("type") == "missing":
        message = f"parameter {field!r} is required"
    else:
        message = f"invalid value for {field!r}: {msg}" if field else msg
    return error_response(request, 400, message, code="invalid_input", field=field, detail=errors)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    rid = request_id_of(request)
    log.error("unexpected error in %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return error_response(request, 500, f"internal server error (request {rid})", code="internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Register one handler for every entry of :data:`STATUS_BY_ERROR`, validation and HTTP errors."""
    for cls in STATUS_BY_ERROR:
        app.add_exception_handler(cls, _cutout_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(CutoutError, _cutout_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_handler)
