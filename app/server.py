"""The HTTP server: uvicorn, guarded against slow clients, in one process or several.

uvicorn closes idle keep-alive connections (``keep_alive_s``) but has no deadline for reading a
request's head: a client that connects and sends nothing, or trickles a header one byte at a time
(slowloris), holds its connection for ever. :class:`GuardedH11Protocol` gives every connection
``header_timeout_s`` to deliver a complete request head (from its opening, or from the end of
the previous answer), and refuses connections beyond ``max_connections`` per process with a 503.
:func:`serve` runs the app in ``processes`` processes sharing one listening socket (uvicorn's own
supervisor); each builds the app from the environment, so settings reach them as ``CUTOUT_*``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "ServerConfig", "build_server", "serve"]

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
         b"connection: close\r\ncontent-length: 92\r\n\r\n"
         b'{"error": {"status": 503, "code": "unavailable"}, "msg": "too many open connections; retry"}  ')


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the guard's two settings."""

    def __init__(self, app: Any, *, header_timeout_s: float = 10.0, max_connections: int = 1024,
                 **kwargs: Any) -> None:
        self.header_timeout_s = float(header_timeout_s)
        self.max_connections = int(max_connections)
        super().__init__(app, http=GuardedH11Protocol, **kwargs)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on open connections."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_timeout = float(getattr(config, "header_timeout_s", 10.0))
        self._max_connections = int(getattr(config, "max_connections", 1024))
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no complete request head in time: a slow or idle client

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head must come in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _options(settings: Any) -> dict[str, Any]:
    options = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
        "access_log": False,  # app.observability logs one JSON line per request
        "timeout_keep_alive": settings.keep_alive_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "header_timeout_s": settings.header_timeout_s, "max_connections": settings.max_connections,
        "limit_concurrency": settings.max_connections + 64,
    }
    if settings.forwarded_allow_ips:
        options["forwarded_allow_ips"] = settings.forwarded_allow_ips
        options["proxy_headers"] = True
    return options


def build_server(app: Any, settings: Any, **overrides: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` in this process (tests and ``cutout serve`` with one process)."""
    return uvicorn.Server(ServerConfig(app, **{**_options(settings), "lifespan": "on", **overrides}))


def serve(settings: Any, env: dict[str, str] | None = None) -> None:
    """Serve until stopped: one process over ``app.main.create_app(settings)``, or
    ``settings.processes`` processes sharing the port, each building the app from the environment
    (``env`` is added to it first: the command line's settings)."""
    if settings.processes <= 1:
        from app.main import create_app

        build_server(create_app(settings), settings).run()
        return
    os.environ.update(env or {})
    from uvicorn.supervisors import Multiprocess

    config = ServerConfig("app.main:create_app", factory=True, workers=settings.processes, **_options(settings))
    sock = config.bind_socket()
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn before 0.36
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
    else:  # each child builds its own Server from the config
        Multiprocess(config, sockets=[sock]).run()
