"""Run a real uvicorn server in a subprocess on 127.0.0.1 for benches and load tests.

Two apps:

- ``ours``: the service (``app.main.create_app(Settings())``, settings from ``CUTOUT_*`` env),
  run as ``cutout serve`` runs it (one process, no access log).
- ``baseline``: a minimal FastAPI app whose ``/tesscut/api/v0.1/astrocut`` calls astrocut 1.4.0's
  ``CutoutFactory().cube_cut(cube, coord, size, memory_only=True)`` on the cube named by
  ``BASELINE_CUBE`` and answers the TPF zipped (stored, in memory) — the obvious way to serve
  astrocut over HTTP, to compare against.

``python bench/_server.py {ours,baseline} --port P [--profile OUT]`` runs one in the foreground;
:class:`ServerProcess` starts one as a subprocess and reads its RSS from ``/proc/<pid>/status``.
``--profile OUT`` profiles the server with cProfile: every call run through
``anyio.to_thread.run_sync`` (the worker pool, FastAPI's thread pool) into ``OUT`` and the
event-loop thread into ``OUT.loop``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ServerProcess", "baseline_app", "cpu_s", "free_port", "rss_kb"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (all threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A uvicorn server (``kind`` 'ours' or 'baseline') in a subprocess; a context manager.

    Parameters
    ----------
    kind : str
        ``"ours"`` or ``"baseline"``.
    env : dict
        Extra environment (``CUTOUT_*`` settings for ours, ``BASELINE_CUBE`` for the baseline).
    profile : str, optional
        Write cProfile stats of the worker threads to this path when the server stops.
    """

    def __init__(self, kind: str, env: dict[str, str] | None = None, profile: str | None = None,
                 startup_timeout_s: float = 120.0) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.profile = profile
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def start(self) -> ServerProcess:
        cmd = [sys.executable, str(Path(__file__).resolve()), self.kind, "--port", str(self.port)]
        if self.profile:
            cmd += ["--profile", self.profile]
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the server's lifetime
            prefix=f"bench-{self.kind}-", suffix=".log", delete=False)
        # the server's own output (access/JSON logs) goes to a file, not into the bench's figures
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=str(ROOT), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}: "
                                   f"{Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} server did not start within {self.startup_timeout_s} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGINT, then SIGKILL after 30 s); its log stays in ``self.log.name``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None) is not None:
            self.log.close()

    def __enter__(self) -> ServerProcess:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------
# the baseline app
# ------------------------------------------------------------------------------------------


def baseline_app() -> Any:
    """FastAPI app: ``GET /tesscut/api/v0.1/astrocut?ra&dec&x`` -> astrocut 1.4.0 cube_cut, zipped."""
    import warnings

    from astrocut import CutoutFactory
    from astropy.coordinates import SkyCoord
    from fastapi import FastAPI
    from fastapi.responses import Response

    warnings.simplefilter("ignore")
    cube = os.environ["BASELINE_CUBE"]
    # astrocut 1.4.0's cube_cut is not safe to run from several threads at once (concurrent calls
    # fail with IndexError inside astropy's section reads): serialise it unless BASELINE_LOCK=0.
    lock = threading.Lock() if os.environ.get("BASELINE_LOCK", "1") != "0" else contextlib.nullcontext()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/tesscut/api/v0.1/astrocut")
    def astrocut(ra: float, dec: float, x: int = 5, y: int | None = None) -> Response:
        # a sync handler: FastAPI runs it on its thread pool, as a minimal service would
        coord = SkyCoord(ra, dec, unit="deg")
        with lock:
            hdul = CutoutFactory().cube_cut(cube, coord, [x, y or x], memory_only=True)
        fits_buf = io.BytesIO()
        hdul.writeto(fits_buf)
        zip_buf = io.BytesIO()
        with zipfile.ZipFile(zip_buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"cutout_{ra:.6f}_{dec:.6f}_{x}x{y or x}_astrocut.fits", fits_buf.getvalue())
        return Response(zip_buf.getvalue(), media_type="application/zip")

    return app


# ------------------------------------------------------------------------------------------
# profiling of worker threads
# ------------------------------------------------------------------------------------------


def _install_thread_profiler(out: str) -> None:
    """Profile every call run through ``anyio.to_thread.run_sync`` (our pool and FastAPI's) with
    one cProfile per thread; merge and dump the stats to ``out`` at exit."""
    import atexit
    import cProfile
    import pstats
    import threading

    import anyio.to_thread

    profiles: list[cProfile.Profile] = []
    local = threading.local()
    original = anyio.to_thread.run_sync

    def wrap(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            prof = getattr(local, "prof", None)
            if prof is None:
                prof = local.prof = cProfile.Profile()
                profiles.append(prof)
            prof.enable()
            try:
                return fn(*args)
            finally:
                prof.disable()

        return run

    async def run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await original(wrap(fn), *args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]

    def dump() -> None:
        if not profiles:
            return
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            stats.add(prof)
        stats.dump_stats(out)

    atexit.register(dump)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one bench server in the foreground")
    ap.add_argument("kind", choices=["ours", "baseline"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--profile", default=None, help="write cProfile stats of worker threads here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import uvicorn

    if args.profile:
        _install_thread_profiler(args.profile)
    if args.kind == "ours":
        from app.main import create_app
        from app.settings import Settings

        app = create_app(Settings())
    else:
        app = baseline_app()
    # uvicorn picks uvloop/httptools when installed ("auto"); BENCH_UVICORN_PLAIN=1 forces the
    # pure-Python asyncio loop and h11 parser, to measure what those two packages bring
    plain = os.environ.get("BENCH_UVICORN_PLAIN") == "1"
    kw: dict[str, Any] = {"loop": "asyncio", "http": "h11"} if plain else {}
    if not args.profile:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, **kw)
        return 0
    import cProfile

    loop_prof = cProfile.Profile()  # the event-loop thread; worker threads are profiled above
    loop_prof.enable()
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, **kw)
    finally:
        loop_prof.disable()
        loop_prof.dump_stats(args.profile + ".loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
