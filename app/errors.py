"""The ONE table mapping engine exceptions to HTTP statuses, and the ONE error shape.

Every 4xx/5xx answer of the service has the body::

    {"error": {"status": 400, "code": "invalid_input", "field": "ra", "message": "...",
               "request_id": "..."},
     "msg": "...",            # the same message: TESScut clients read ``msg``
     "detail": ...}           # validation details, or null

Handlers never map exceptions themselves: they raise ``core.errors`` types and
:func:`install_error_handlers` registers one handler per entry of :data:`STATUS_BY_ERROR`.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    CorruptFileError,
    CutoutError,
    CutoutTimeoutError,
    ForbiddenError,
    InvalidInputError,
    NoDataError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)

__all__ = [
    "RETRY_AFTER_S",
    "STATUS_BY_ERROR",
    "BodySizeLimitMiddleware",
    "RequestIdMiddleware",
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
    NoDataError: 404,  # the TESScut routes answer 200 + {"msg"} instead, see routers/tesscut.py
    TooLargeError: 413,
    CorruptFileError: 422,
    UnavailableError: 503,
    CutoutTimeoutError: 504,
}

#: seconds a client is told to wait after a 503
RETRY_AFTER_S = 5

_CODES_BY_STATUS = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "corrupt_file",
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
) -> JSONResponse:
    """Build the error response (adds ``X-Request-ID`` and, for 503, ``Retry-After``)."""
    rid = request_id_of(request)
    hdrs = {"X-Request-ID": rid, **(headers or {})}
    if status == 503:
        hdrs.setdefault("Retry-After", str(RETRY_AFTER_S))
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


async def _cutout_error_handler(request: Request, exc: CutoutError) -> JSONResponse:
    status = status_for(exc)
    return error_response(request, status, exc.message, code=error_code(exc), field=exc.field)


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    first = errors[0] if errors else {}
    field = _field_of(first.get("loc", ()))
    msg = first.get("msg", "invalid request")
    if first.get("type") == "missing":
        message = f"parameter {field!r} is required"
    else:
        message = f"invalid value for {field!r}: {msg}" if field else msg
    return error_response(request, 400, message, code="invalid_input", field=field, detail=errors)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
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


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the request (or make one), keep it in ``scope['state']`` and echo it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1").strip()
                if 0 < len(text) <= 128 and text.isprintable():
                    rid = text
                break
        state = scope.setdefault("state", {})
        state["request_id"] = rid or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", state["request_id"].encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Answer 413 (the one error shape) to request bodies larger than ``max_bytes``.

    A ``Content-Length`` over the limit is refused before the body is read; a chunked body is
    counted as it arrives and the request is cut short at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = error_response(
            request,
            413,
            f"request body exceeds the limit of {self.max_bytes} bytes",
            code="too_large",
            field="body",
            # close: the server must not go on reading (and discarding) the rest of a huge body
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        await self._refuse(scope, receive, send)
                        return
                except ValueError:
                    pass
        seen = 0
        overflow = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    overflow = True
                    raise TooLargeError(
                        f"request body exceeds the limit of {self.max_bytes} bytes", field="body"
                    )
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # the app's own answer to the broken body is replaced below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except TooLargeError:
            if not overflow:
                raise
        if overflow and not started:
            await self._refuse(scope, receive, send)
