"""The HTTP server: uvicorn, guarded against slow clients, in one process or several.

uvicorn closes idle keep-alive connections (``keep_alive_s``) but has no deadline for the phases of
a request: a client that sends its head, its body or reads the answer one byte at a time holds its
connection (and, while answered, the request's worker, memory and budget) for ever.
:class:`GuardedH11Protocol` gives every connection a deadline for every phase:

- **head**: ``header_timeout_s`` to deliver a complete request head (from its opening, or from the
  end of the previous answer);
- **body**: ``body_timeout_s`` after the head, extended by one second for every ``body_min_rate``
  bytes received (Apache's ``mod_reqtimeout``); time the application itself is not reading does
  not count;
- **sending**: whenever the connection's buffer is full (the client is not taking the answer),
  ``send_timeout_s`` for it to drain; else the connection is aborted, and the application sees the
  client gone (a streamed answer stops and gives back its worker, memory, disk and budget).

It also refuses connections beyond ``max_connections`` per process with a 503 in the service's
error shape. :func:`serve` runs the app in ``processes`` processes sharing the port
(:class:`Supervisor`: each process listens on its own ``SO_REUSEPORT`` socket, so the kernel
balances connections), each building its app from the same settings and sharing one budget
(:class:`app.budget.SharedLedger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "ServerConfig", "Supervisor", "build_server", "raw_error", "serve"]

log = logging.getLogger("app.server")

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def raw_error(status: int, code: str, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 error answer in the service's error shape (:func:`app.errors.error_body`),
    for the protocol to write itself before closing a connection no application saw."""
    from app.errors import error_body

    body = json.dumps(error_body(status, code, message, field=None, request_id=uuid.uuid4().hex),
                      separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "content-type: application/json",
            "connection: close", f"content-length: {len(body)}"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the guard's settings."""

    def __init__(self, app: Any, *, header_timeout_s: float = 10.0, max_connections: int = 1024,
                 body_timeout_s: float = 20.0, body_min_rate: int = 500, send_timeout_s: float = 60.0,
                 **kwargs: Any) -> None:
        self.header_timeout_s = float(header_timeout_s)
        self.max_connections = int(max_connections)
        self.body_timeout_s = float(body_timeout_s)
        self.body_min_rate = max(1, int(body_min_rate))
        self.send_timeout_s = float(send_timeout_s)
        super().__init__(app, http=GuardedH11Protocol, **kwargs)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each phase of a request and a cap on open
    connections (see the module docstring)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_timeout = float(getattr(config, "header_timeout_s", 10.0))
        self._max_connections = int(getattr(config, "max_connections", 1024))
        self._body_timeout = float(getattr(config, "body_timeout_s", 20.0))
        self._body_rate = max(1, int(getattr(config, "body_min_rate", 500)))
        self._send_timeout = float(getattr(config, "send_timeout_s", 60.0))
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._body_start = self._body_checked = 0.0
        self._body_seen = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            transport.write(raw_error(503, "unavailable", "too many open connections; retry shortly",
                                      retry_after=5))
            transport.close()
            return
        self._arm()

    # -- the head --------------------------------------------------------------------------------
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

    # -- the body --------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is not h11.IDLE:  # a whole request head has arrived
            self._disarm()
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_start = self._body_checked = self.loop.time()
                self._body_seen = 0
                self._body_timer = self.loop.call_later(self._body_timeout, self._body_expired)
            self._body_seen += len(data)
        else:
            self._stop_body_timer()

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the application is not reading: not the client's time
            self._body_start += now - self._body_checked
        self._body_checked = now
        deadline = self._body_start + self._body_timeout + self._body_seen / self._body_rate
        if now < deadline:
            self._body_timer = self.loop.call_at(deadline, self._body_expired)
            return
        log.warning("closing a connection whose request body came too slowly (%d bytes in %.0f s)",
                    self._body_seen, now - self._body_start)
        if self.cycle is not None and not self.cycle.response_started:
            self.transport.write(raw_error(408, "timeout", "the request body did not arrive in time "
                                           "(body_timeout_s, body_min_rate)"))
        self.transport.close()

    # -- sending ---------------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self._send_timeout, self._send_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_expired(self) -> None:
        self._send_timer = None
        if not self.transport.is_closing():
            log.warning("aborting a connection whose client did not take the answer within %g s (send_timeout_s)",
                        self._send_timeout)
            self.transport.abort()  # connection_lost follows: the application sees the client gone

    # -- the connection --------------------------------------------------------------------------
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head must come in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_body_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)


def _options(settings: Any) -> dict[str, Any]:
    options = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
        "access_log": False,  # app.observability logs one JSON line per request
        "timeout_keep_alive": settings.keep_alive_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "header_timeout_s": settings.header_timeout_s, "max_connections": settings.max_connections,
        "body_timeout_s": settings.body_timeout_s, "body_min_rate": settings.body_min_rate,
        "send_timeout_s": settings.send_timeout_s,
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


def _serve_child(settings: Any, ledger_path: str | None = None, slot: int = 0) -> None:
    """One server process: its own listening socket in the port's group, its own app, and its
    slot of the server's shared budget ledger."""
    if sys.platform.startswith("linux"):  # die with the supervisor, even if it is killed
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM stops gracefully
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a spawned process starts with logging unconfigured: the service's start-up lines (settings,
    # catalog, surveys) would be lost; the same format as the cutout command's
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app.budget import SharedLedger
    from app.main import create_app

    ledger = SharedLedger.attach(ledger_path, slot) if ledger_path else None
    sock = _reuse_port_socket(settings.host, settings.port, listen=True)
    build_server(create_app(settings, ledger=ledger), settings).run(sockets=[sock])


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

    The processes share one memory and one disk budget (``memory_budget_bytes``,
    ``disk_budget_bytes`` are the host's, not each process's): the supervisor creates a
    :class:`app.budget.SharedLedger` under ``work_dir`` with one slot per process, and empties a
    dead process's slot before its successor takes it, so a crash leaks no budget. A shared
    counter rather than a budget divided at start: one process can use the whole budget when the
    others are idle, and a request as large as the budget still fits somewhere.
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
        self.ledger_path: str | None = None

    def _start(self, slot: int) -> tuple[Any, float]:
        if self.ledger_path is not None:
            from app.budget import SharedLedger

            ledger = SharedLedger(self.ledger_path, slot)
            ledger.clear(slot)  # what a dead predecessor held is free again
            ledger.close()
        proc = self._ctx.Process(target=_serve_child, args=(self.settings, self.ledger_path, slot),
                                 name="cutout-server")
        proc.start()
        return proc, time.monotonic()

    def run(self) -> int:
        """Run until a stop signal (0) or repeated start-up failures (1)."""
        holder = _reuse_port_socket(self.settings.host, self.settings.port, listen=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self._stop.set())
        failures, status = 0, 0
        from app.budget import SharedLedger

        work_dir = os.fspath(self.settings.work_dir)
        self.ledger_path = SharedLedger.create(os.path.join(work_dir, f".budget-{os.getpid()}.ledger"),
                                               self.settings.processes)
        try:
            self._procs = [self._start(i) for i in range(self.settings.processes)]
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
                    self._procs[i] = self._start(i)
        finally:
            self._shutdown()
            holder.close()
            with contextlib.suppress(OSError):
                os.unlink(self.ledger_path)
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
