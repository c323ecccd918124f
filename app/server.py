"""The HTTP server: uvicorn, guarded against slow clients, in one process or several.

uvicorn closes idle keep-alive connections (``keep_alive_s``) but has no deadline for reading a
request's head: a client that connects and sends nothing, or trickles a header one byte at a time
(slowloris), holds its connection for ever. :class:`GuardedH11Protocol` gives every connection
``header_timeout_s`` to deliver a complete request head (from its opening, or from the end of
the previous answer), and refuses connections beyond ``max_connections`` per process with a 503.
:func:`serve` runs the app in ``processes`` processes sharing the port (:class:`Supervisor`: each
process listens on its own ``SO_REUSEPORT`` socket, so the kernel balances connections), each
building its app from the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "ServerConfig", "Supervisor", "build_server", "serve"]

log = logging.getLogger("app.server")

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


def serve(settings: Any) -> int:
    """Serve until stopped: one process over ``app.main.create_app(settings)``, or
    ``settings.processes`` processes (:class:`Supervisor`). Returns the exit status."""
    if settings.processes <= 1:
        from app.main import create_app

        build_server(create_app(settings), settings).run()
        return 0
    return Supervisor(settings).run()


def _reuse_port_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to (host, port) with ``SO_REUSEPORT``: the kernel spreads new connections
    over every listening socket of the group (one per process), instead of one shared socket whose
    queue the first process to wake up drains."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve_child(settings: Any) -> None:
    """One server process: its own listening socket in the port's group, its own app."""
    if sys.platform.startswith("linux"):  # die with the supervisor, even if it is killed
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM stops gracefully
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a spawned process starts with logging unconfigured: the service's start-up lines (settings,
    # catalog, surveys) would be lost; the same format as the cutout command's
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app.main import create_app

    sock = _reuse_port_socket(settings.host, settings.port, listen=True)
    build_server(create_app(settings), settings).run(sockets=[sock])


class Supervisor:
    """``processes`` server processes sharing one port through ``SO_REUSEPORT``.

    uvicorn's own supervisor hands every process one shared listening socket; the process that
    wakes first accepts every waiting connection, so a burst of keep-alive clients (a load
    balancer's, a batch's) can all land on one process. Here each process listens on its own
    socket of the port's reuse group and the kernel balances connections between them.

    The supervisor binds the port first (a port another server holds fails at once) and keeps it
    while its processes come and go; it restarts a process that dies, gives up when processes keep
    dying at start-up, and on SIGTERM or SIGINT stops them all gracefully (``shutdown_grace_s``,
    then SIGKILL). Its processes end with it even when it is killed (``PR_SET_PDEATHSIG``).
    """

    #: a process that ends sooner than this after starting failed at start-up
    STARTUP_S = 5.0
    #: consecutive start-up failures after which the supervisor gives up
    MAX_STARTUP_FAILURES = 3

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[tuple[Any, float]] = []
        self._stop = threading.Event()

    def _start(self) -> tuple[Any, float]:
        proc = self._ctx.Process(target=_serve_child, args=(self.settings,), name="cutout-server")
        proc.start()
        return proc, time.monotonic()

    def run(self) -> int:
        """Run until a stop signal (0) or repeated start-up failures (1)."""
        holder = _reuse_port_socket(self.settings.host, self.settings.port, listen=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self._stop.set())
        failures, status = 0, 0
        try:
            self._procs = [self._start() for _ in range(self.settings.processes)]
            while not self._stop.wait(0.5):
                for i, (proc, started) in enumerate(self._procs):
                    if proc.is_alive():
                        continue
                    early = time.monotonic() - started < self.STARTUP_S
                    failures = failures + 1 if early else 0
                    log.warning("server process %s ended (exit %s)%s", proc.pid, proc.exitcode,
                                " at start-up" if early else "; starting another")
                    if failures >= self.MAX_STARTUP_FAILURES:
                        log.error("server processes keep failing at start-up: stopping")
                        self._stop.set()
                        status = 1
                        break
                    self._procs[i] = self._start()
        finally:
            self._shutdown()
            holder.close()
        return status

    def _shutdown(self) -> None:
        for proc, _ in self._procs:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + float(self.settings.shutdown_grace_s) + 5.0
        for proc, _ in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
