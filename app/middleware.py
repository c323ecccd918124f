"""Cross-cutting ASGI middleware: request ids, the body-size limit, HEAD for every GET route.

Plain ASGI classes (no per-request objects), so streamed answers pass through untouched.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response
from core.errors import TooLargeError

__all__ = ["BodySizeLimitMiddleware", "HeadMiddleware", "RequestIdMiddleware"]


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
    """Answer 413 (the one error shape) to request bodies larger than ``max_bytes``, or than
    ``max_form_bytes`` when the body carries no files (not ``multipart/form-data``: a form or JSON
    body, parsed on the event loop).

    A ``Content-Length`` over the limit is refused before the body is read; a chunked body is
    counted as it arrives and the request is cut short at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_form_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_form_bytes = max_form_bytes

    def _limit(self, scope: Scope) -> int:
        if self.max_form_bytes is None:
            return self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                return self.max_bytes if value.lower().startswith(b"multipart/form-data") else self.max_form_bytes
        return self.max_form_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = error_response(
            request,
            413,
            f"request body exceeds the limit of {self._limit(scope)} bytes",
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
        framed = False  # a body is framed by Content-Length or Transfer-Encoding, or there is none
        limit = self._limit(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                framed = True
                try:
                    if int(value) > limit:
                        await self._refuse(scope, receive, send)
                        return
                except ValueError:
                    pass
            elif name == b"transfer-encoding":
                framed = True
        if not framed:  # no body can follow (RFC 9112 6.3): nothing to count
            await self.app(scope, receive, send)
            return
        seen = 0
        overflow = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    raise TooLargeError(f"request body exceeds the limit of {limit} bytes", field="body")
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


class _HeadDone(BaseException):
    """Raised from ``send`` once a HEAD answer's headers are out: stops the app's body."""


class HeadMiddleware:
    """Answer ``HEAD`` on every ``GET`` route: route it as GET, send the headers, drop the body.

    FastAPI routes declared for GET answer 405 to HEAD. Here a HEAD request is routed as GET; its
    response headers go out with an empty body, and the app's body is cut short at its first
    chunk (a streamed zip stops there and cleans up, as when a client goes away). The
    Content-Length header, when the answer has one, is kept: it tells the size of the GET.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def head_send(message: Message) -> None:
            nonlocal done
            if done:
                raise _HeadDone
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                done = True
                if message.get("more_body", False):
                    raise _HeadDone

        try:
            await self.app({**scope, "method": "GET"}, receive, head_send)
        except _HeadDone:
            pass
