"""Per-client fairness: at most ``max_requests_per_client`` requests of one client address in
flight at once, as MAST limits its clients.

A request counts from its arrival until its answer is completely sent (a streamed zip included)
or its client goes away; one more is answered 429 with ``Retry-After`` by the one error table
(:class:`~core.errors.QuotaError`). Liveness and documentation routes (``/health``, ``/metrics``,
``/version``, the page, ``/docs``) never count. The address is the connection's, or the client's
own when a trusted proxy forwards it (``forwarded_allow_ips``: uvicorn rewrites the scope).
"""

from __future__ import annotations

import threading
from collections import defaultdict

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_code, error_response
from core.errors import QuotaError

__all__ = ["ClientLimitMiddleware"]

#: paths that never count: liveness, metrics, the page and its documents
_EXEMPT = ("/health", "/metrics", "/version", "/docs", "/redoc", "/openapi.json", "/static/", "/favicon")
#: what a client refused is told to wait, seconds
RETRY_AFTER_S = 2


class ClientLimitMiddleware:
    """ASGI middleware counting each client address's requests in flight (see the module docstring)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = int(limit)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/" or path.startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        with self._lock:
            busy = self._in_flight[client] >= self.limit
            if not busy:
                self._in_flight[client] += 1
        if busy:
            self.refused += 1
            exc = QuotaError(f"this client already has {self.limit} requests in flight (max_requests_per_client); "
                             "retry when one has finished", retry_after_s=RETRY_AFTER_S, field=None)
            response = error_response(Request(scope, receive), 429, exc.message, code=error_code(exc),
                                      headers={"Retry-After": str(exc.retry_after_s)})
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._in_flight[client] -= 1
                if self._in_flight[client] <= 0:
                    del self._in_flight[client]
