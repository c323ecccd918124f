"""A TCP proxy that adds a fixed latency to client-to-server traffic (tests and benches).

Put it between an S3 client and a local S3 server to make every HTTP request pay one round trip,
as against a remote store, while responses flow back undelayed:

    proxy = LatencyProxy("127.0.0.1", s3rver_port, delay_s=0.05)
    port = proxy.start()                  # its own event loop on a background thread
    cfg = dataclasses.replace(server.config, endpoint_url=f"http://127.0.0.1:{port}")
    ...
    proxy.stop()

or from a shell: ``python tests/latency_proxy.py --target 127.0.0.1:PORT --delay-ms 50 --port P``.

Each chunk read from a client is forwarded ``delay_s`` after it arrived (``delay_s`` as it is
while the chunk waits: a test can hold requests back with a long delay and let them go by shortening
it). Forwarding is pipelined
(reading goes on while earlier chunks wait), so a request that arrives in several chunks still pays
one delay, like a link's latency, not one per chunk; connections are independent, so N concurrent
requests complete in about one delay. Memory is bounded: at most ``max_queued`` chunks of at most
``chunk_size`` bytes wait per connection, and writes honour the peer's flow control (``drain``).
Half-closes are forwarded (EOF from the client reaches the server after the queued chunks, and
the other direction stays open); a reset on either side closes both. Connection set-up is not
delayed: a real link would add one more round trip per new connection (and TLS's), so a client
that reuses its connections, as botocore's pool does, sees the same cost either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import threading
import time
from typing import Self

__all__ = ["GatedProxy", "LatencyProxy"]

#: longest single sleep of a waiting chunk (how soon a changed delay_s applies to it)
_DELAY_SLICE_S = 0.05


class LatencyProxy:
    """Forward ``listen_host:port`` to ``target_host:target_port``, delaying client-to-server data.

    Parameters
    ----------
    target_host, target_port : where to connect for each accepted connection.
    delay_s : seconds each client-to-server chunk waits before it is forwarded (may be changed
        while running: it applies to the chunks waiting too, within 50 ms).
    listen_host, port : where to listen; ``port=0`` picks a free port (see :meth:`start`).
    chunk_size : largest read, bytes. max_queued : chunks waiting per connection before reading
        from the client pauses.

    Attributes
    ----------
    port : int, the listening port once started. connections : accepted so far.
    chunks_delayed : client-to-server chunks forwarded so far.
    waiting : chunks in their delay now (taken from their connection's queue, not forwarded yet),
        over all connections. max_waiting : the most that ever were at once (concurrent requests
        each wait their own delay at the same time).
    """

    def __init__(self, target_host: str, target_port: int, delay_s: float = 0.05, *,
                 listen_host: str = "127.0.0.1", port: int = 0, chunk_size: int = 64 * 1024,
                 max_queued: int = 64) -> None:
        self.target_host = target_host
        self.target_port = int(target_port)
        self.delay_s = float(delay_s)
        self.listen_host = listen_host
        self.port = int(port)
        self.chunk_size = int(chunk_size)
        self.max_queued = int(max_queued)
        self.connections = 0
        self.chunks_delayed = 0
        self.waiting = 0
        self.max_waiting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- the proxy ---------------------------------------------------------------------------
    async def serve(self, ready: threading.Event | None = None) -> None:
        """Listen and proxy until :meth:`stop` (or cancellation); for use inside an event loop."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port,
                                                  limit=self.chunk_size, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        try:
            await self._stopped.wait()
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._connection(creader, cwriter)
        except asyncio.CancelledError:
            pass  # stop() cancels open connections; asyncio would log a cancelled handler as an error
        finally:
            self._tasks.discard(task)

    async def _connection(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        """Proxy one accepted connection until both directions have ended (or one failed)."""
        swriter: asyncio.StreamWriter | None = None
        try:
            try:
                sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port,
                                                                 limit=self.chunk_size)
            except OSError:
                return  # target down: the client sees the connection close, as with a dead host
            up = asyncio.create_task(self._client_to_server(creader, swriter))
            down = asyncio.create_task(self._pump(sreader, cwriter))
            pending = {up, down}
            try:
                while pending:  # a direction that ends cleanly (a half-close) leaves the other open
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if any(t.cancelled() or t.exception() is not None for t in done):
                        break  # an error (a reset) in one direction ends the other
            finally:
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        finally:
            for w in (cwriter, swriter):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks as they come; forward each ``delay_s`` after its arrival (bounded queue)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self.max_queued)

        async def forward() -> None:
            while True:
                arrived, data = await queue.get()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()  # half-close: the server still answers
                    return
                self.waiting += 1
                self.max_waiting = max(self.max_waiting, self.waiting)
                try:
                    # in slices, so that a changed delay_s applies to a chunk already waiting
                    while (wait := arrived + self.delay_s - time.monotonic()) > 0:
                        await asyncio.sleep(min(wait, _DELAY_SLICE_S))
                    writer.write(data)
                    await writer.drain()
                finally:
                    self.waiting -= 1
                self.chunks_delayed += 1

        sender = asyncio.create_task(forward())
        me = asyncio.current_task()

        def failed(t: asyncio.Task) -> None:  # a failed write must not leave the reader stuck on put()
            if me is not None and not t.cancelled() and t.exception() is not None:
                me.cancel()

        sender.add_done_callback(failed)
        try:
            while True:
                data = await reader.read(self.chunk_size)
                await queue.put((time.monotonic(), data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server to client, undelayed; the server's EOF becomes a half-close toward the client."""
        while True:
            data = await reader.read(self.chunk_size)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    # -- background thread -------------------------------------------------------------------
    def start(self) -> int:
        """Run the proxy on its own event loop in a daemon thread; return the listening port."""
        if self._thread is not None:
            return self.port
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready))
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name=f"latency-proxy-{self.target_port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            self._thread = None
            raise RuntimeError(f"latency proxy did not start: {errors[0]!r}")
        return self.port

    def stop(self) -> None:
        """Close the listener and every proxied connection, and join the thread (idempotent)."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        self._thread = None
        if thread is None or loop is None or stopped is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stopped.set)
        thread.join(10)

    @property
    def url(self) -> str:
        """``http://listen_host:port`` (for an S3 ``endpoint_url``)."""
        return f"http://{self.listen_host}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_REQUEST = re.compile(rb"(?:^|\r\n)(GET|HEAD|PUT|POST|DELETE) /")


class GatedProxy(LatencyProxy):
    """A proxy that holds requests at a gate: once :meth:`arm`-ed with ``expect``, each request is
    held until ``expect`` requests are held at once (then all go on), or until ``hold_s`` has passed.

    A client that issues its requests together opens the gate; one that waits for each answer
    before sending the next holds one request at a time. :attr:`max_held` (requests held at
    once, at most) then tells which: how concurrent a client is, without timing anything.
    ``requests`` counts the requests seen (GET, HEAD...), gated or not.
    """

    def __init__(self, target_host: str, target_port: int, *, hold_s: float = 10.0, **kwargs: object) -> None:
        super().__init__(target_host, target_port, delay_s=0.0, **kwargs)  # type: ignore[arg-type]
        self.hold_s = float(hold_s)
        self.expect = 0
        self.held = 0
        self.max_held = 0
        self.requests = 0
        self._open: asyncio.Event | None = None

    def arm(self, expect: int) -> None:
        """Hold the next requests until ``expect`` of them wait at once (``max_held`` restarts)."""
        done = threading.Event()

        def reset() -> None:
            self.expect, self.max_held = int(expect), 0
            self._open = asyncio.Event()
            done.set()

        assert self._loop is not None, "start the proxy first"
        self._loop.call_soon_threadsafe(reset)
        done.wait(10)

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await super()._client_to_server(_GatedReader(reader, self), writer)  # type: ignore[arg-type]

    async def _hold(self) -> None:
        self.requests += 1
        gate = self._open
        if gate is None or gate.is_set():
            return
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        if self.held >= self.expect:
            gate.set()
        try:
            await asyncio.wait_for(gate.wait(), self.hold_s)
        except TimeoutError:
            pass
        finally:
            self.held -= 1


class _GatedReader:
    """A client's stream as :class:`GatedProxy` reads it: a chunk that starts a request waits at the gate."""

    def __init__(self, reader: asyncio.StreamReader, proxy: GatedProxy) -> None:
        self.reader, self.proxy = reader, proxy

    async def read(self, n: int) -> bytes:
        data = await self.reader.read(n)
        for _ in _REQUEST.finditer(data[:4096]):
            await self.proxy._hold()
        return data


def main(argv: list[str] | None = None) -> None:
    """``python tests/latency_proxy.py --target HOST:PORT --delay-ms MS [--port P] [--host H]``."""
    ap = argparse.ArgumentParser(description="TCP proxy adding latency to client-to-server traffic.")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="delay per client-to-server chunk")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    proxy = LatencyProxy(host or "127.0.0.1", int(port), args.delay_ms / 1000.0, listen_host=args.host,
                         port=args.port)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ready = threading.Event()
        task = asyncio.create_task(proxy.serve(ready))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: proxy._stopped.set() if proxy._stopped else None)
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if ready.is_set():
            print(f"latency proxy {args.host}:{proxy.port} -> {args.target} (+{args.delay_ms:g} ms)", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
