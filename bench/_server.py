"""Run a real uvicorn server in a subprocess on 127.0.0.1 for benches and load tests.

The apps:

- ``ours``: the service (``app.main.create_app(Settings())``, settings from ``CUTOUT_*`` env),
  run as ``cutout serve`` runs it (one process, no access log).
- ``baseline``: a minimal FastAPI app whose ``/tesscut/api/v0.1/astrocut`` calls astrocut 1.4.0's
  ``CutoutFactory().cube_cut(cube, coord, size, memory_only=True)`` on the cube named by
  ``BASELINE_CUBE`` and answers the TPF zipped (stored, in memory) — the obvious way to serve
  astrocut over HTTP, to compare against.
- ``floor``: the framework's floor: a minimal FastAPI app whose ``/tesscut/api/v0.1/astrocut``
  takes the same query parameters (validated as numbers and strings by FastAPI) and answers a
  prepared zip of one member of ``FLOOR_MEMBER_BYTES`` bytes named ``FLOOR_MEMBER_NAME`` (no cut,
  no middleware): what FastAPI and uvicorn alone cost per request for an answer of our size.

- ``cutfloor``: the floor with the cut: the same bare app answering the real cut of ``CUTFLOOR_CUBE``
  (our engine's locate, cut and zip) made on FastAPI's thread pool, or with ``CUTFLOOR_ON_LOOP=1``
  on the event loop: what any design costs per request with and without the thread hop, before
  admission, limits, request ids, logs and metrics.
- ``zipfloor``: the transfer's floor: a bare FastAPI app whose ``/tesscut/api/v0.1/astrocut``
  streams, with ``stream-zip`` in the service's piece size (``app.streaming.CHUNK_SIZE``), a zip of
  members of the sizes listed in ``ZIPFLOOR_SIZES`` (comma-separated bytes) held in memory: what
  sending that many bytes through uvicorn costs, with no cutting.

``python bench/_server.py {ours,baseline,floor,cutfloor,zipfloor} --port P [--profile OUT]`` runs one in the foreground;
:class:`ServerProcess` starts one as a subprocess and reads its RSS from ``/proc/<pid>/status``.
``--profile OUT`` profiles the server with cProfile: every call run through
``anyio.to_thread.run_sync`` (the worker pool, FastAPI's thread pool) into ``OUT`` and the
event-loop thread into ``OUT.loop``.

For archive-scale and memory benches, :class:`CutoutServe` runs the real ``cutout serve`` command
(imports, settings from ``CUTOUT_*``, one or several processes) and times its start-up;
:func:`tree_rss_kb` / :func:`tree_cpu_s` sum a whole process tree from ``/proc``, and
:class:`RssSampler` samples a tree's RSS every ~0.2 s, keeping the peak, and kills the tree when
it passes a ceiling, so a regression cannot take the machine down.
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

__all__ = ["CeilingExceeded", "CutoutServe", "RssSampler", "ServerProcess", "access_log", "astrocut_s3_env", "baseline_app",
           "cpu_s", "free_port", "rss_kb", "tree_cpu_s", "tree_pids", "tree_rss_kb"]


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


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every live descendant (children found from the parent ids in ``/proc/*/stat``).

    Empty when ``pid`` itself is gone.
    """
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(name))
    if not os.path.exists(f"/proc/{pid}"):
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_rss_kb(pid: int) -> int:
    """Sum of ``VmRSS`` (KiB) over ``pid`` and its live descendants (0 when it is gone).

    Shared pages (the interpreter, mapped libraries) count once per process, as ``ps`` shows them:
    for a tree of several server processes this is the memory those processes hold between them,
    an upper bound of what the machine pays.
    """
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += rss_kb(p)
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used by ``pid``'s process tree: every live process's own time
    plus the time of the children it has reaped (``cutime``/``cstime``), from ``/proc/<pid>/stat``."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s tree, descendants first (a child must not be re-parented and survive)."""
    for p in reversed(tree_pids(pid)):
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


class CeilingExceeded(RuntimeError):
    """A process tree passed its RSS ceiling and was killed."""


class _Window:
    """The peak tree RSS seen while a :meth:`RssSampler.window` block ran (KiB)."""

    def __init__(self, start_kb: int) -> None:
        self.start_kb = start_kb
        self.peak_kb = start_kb
        self.samples = 0


class RssSampler:
    """Sample a process tree's RSS (:func:`tree_rss_kb`) every ``interval_s`` on a thread.

    Keeps the overall peak and the peak of each open :meth:`window`. When the tree passes
    ``ceiling_kb`` it is killed at once (SIGKILL, descendants first), :attr:`exceeded_kb` records
    the figure and :meth:`check` raises :class:`CeilingExceeded`: whatever a regression does, the
    tree never holds much more than the ceiling for longer than one interval.
    """

    def __init__(self, pid: int, *, interval_s: float = 0.2, ceiling_kb: int | None = None) -> None:
        self.pid = pid
        self.interval_s = float(interval_s)
        self.ceiling_kb = ceiling_kb
        self.peak_kb = 0
        self.last_kb = 0
        self.exceeded_kb: int | None = None
        self._windows: list[_Window] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Take one sample now (also what the thread does); returns the tree's RSS, KiB."""
        kb = tree_rss_kb(self.pid)
        with self._lock:
            self.last_kb = kb
            self.peak_kb = max(self.peak_kb, kb)
            for w in self._windows:
                w.peak_kb = max(w.peak_kb, kb)
                w.samples += 1
        if self.ceiling_kb is not None and kb > self.ceiling_kb and self.exceeded_kb is None:
            self.exceeded_kb = kb
            _kill_tree(self.pid)
            print(f"  RSS ceiling: the server's process tree reached {kb / 2**20:.2f} GiB "
                  f"(> {self.ceiling_kb / 2**20:.2f} GiB): killed", flush=True)
        return kb

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> RssSampler:
        if self._thread is None:
            self.sample()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def check(self) -> None:
        """Raise :class:`CeilingExceeded` if the ceiling was passed."""
        if self.exceeded_kb is not None:
            raise CeilingExceeded(f"process tree passed its RSS ceiling: {self.exceeded_kb / 2**20:.2f} GiB")

    @contextlib.contextmanager
    def window(self) -> Any:
        """``with sampler.window() as w: ...``: ``w.peak_kb`` is the peak while the block ran
        (``w.start_kb`` the figure when it began)."""
        w = _Window(self.sample())
        with self._lock:
            self._windows.append(w)
        try:
            yield w
        finally:
            self.sample()
            with self._lock:
                self._windows.remove(w)

    def __enter__(self) -> RssSampler:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def access_log(path: str | os.PathLike, route: str | None = None) -> list[dict[str, Any]]:
    """The service's access-log records (``app.observability``'s one JSON line per request, at log
    level info) found in a server log file, optionally only those of one route template."""
    import json

    out = []
    with open(path, errors="replace") as fh:
        for line in fh:
            start = line.find('{"ts"')
            if start < 0 or '"event":"request"' not in line:
                continue
            try:
                rec = json.loads(line[start:])
            except ValueError:
                continue
            if route is None or rec.get("route") == route:
                out.append(rec)
    return out


class CutoutServe:
    """The real ``cutout serve`` (``python -m app serve``, what the console script runs) in a
    subprocess on a free 127.0.0.1 port; a context manager.

    Settings come from ``env`` (``CUTOUT_*``) on top of this environment. :attr:`startup_s` is the
    wall time from starting the process (interpreter start and imports included) to the first
    HTTP 200 from ``/health`` (polled every 20 ms); :attr:`health` is that answer. The process is
    its own session leader, so :meth:`stop` can always remove the whole tree. With ``ceiling_kb``
    an :class:`RssSampler` watches the tree from start to stop and kills it past the ceiling.

    Parameters
    ----------
    env : dict
        Extra environment, e.g. ``CUTOUT_CUBE_DIRS``, ``CUTOUT_INDEX``, ``CUTOUT_WORK_DIR``.
    workers : int, optional
        ``--workers N``: server processes sharing the port (the supervisor + N children).
    root, python : path, optional
        Another checkout and its interpreter (e.g. an earlier commit's worktree and venv).
    launcher : list of str, optional
        The command before ``serve ...`` (default ``[python, "-m", "app"]``).
    keep_log : bool
        Keep the server's log file (:attr:`log_path`) after :meth:`stop`; by default it is removed
        unless the server failed to start.
    """

    def __init__(self, env: dict[str, str] | None = None, *, workers: int | None = None,
                 ceiling_kb: int | None = None, interval_s: float = 0.2, startup_timeout_s: float = 180.0,
                 root: str | os.PathLike | None = None, python: str | os.PathLike | None = None,
                 extra_args: list[str] | None = None, launcher: list[str] | None = None,
                 keep_log: bool = False) -> None:
        self.root = Path(root) if root is not None else ROOT
        self.python = str(python) if python is not None else sys.executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(self.root), **(env or {})}
        self.workers = workers
        self.ceiling_kb = ceiling_kb
        self.interval_s = interval_s
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args or [])
        self.launcher = list(launcher) if launcher else [self.python, "-m", "app"]
        self.keep_log = keep_log
        self.proc: subprocess.Popen | None = None
        self.sampler: RssSampler | None = None
        self.startup_s = float("nan")
        self.health: dict[str, Any] = {}
        self.log_path = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tree_rss_kb(self) -> int:
        return tree_rss_kb(self.pid)

    def tree_cpu_s(self) -> float:
        return tree_cpu_s(self.pid)

    # what bench_http_load.run_load reads from a server: here, always the whole process tree
    rss_kb = tree_rss_kb
    cpu_s = tree_cpu_s

    def pids(self) -> list[int]:
        return tree_pids(self.pid)

    def tree_table(self) -> list[tuple[int, int, str]]:
        """``(pid, VmRSS KiB, role)`` of each process in the tree: ``server`` (the command),
        ``worker`` (a process the supervisor spawned), or the helper's own name."""
        out = []
        for p in self.pids():
            try:
                kb = rss_kb(p)
                with open(f"/proc/{p}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, RuntimeError):
                continue
            if p == self.pid:
                role = "server" if not self.workers or self.workers <= 1 else "supervisor"
            elif "resource_tracker" in cmd:
                role = "resource_tracker"
            elif "multiprocessing" in cmd:
                role = "worker"
            else:
                role = cmd.split(" ", 1)[0].rsplit("/", 1)[-1] or "?"
            out.append((p, kb, role))
        return out

    def get_health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``/health``'s JSON, or None when it does not answer 200."""
        import http.client
        import json

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = resp.read()
            return json.loads(body) if resp.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def start(self) -> CutoutServe:
        cmd = [*self.launcher, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        cmd += self.extra_args
        fd, self.log_path = tempfile.mkstemp(prefix="bench-serve-", suffix=".log")
        t0 = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=str(self.root), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.ceiling_kb is not None:
            self.sampler = RssSampler(self.proc.pid, interval_s=self.interval_s, ceiling_kb=self.ceiling_kb).start()
        deadline = t0 + self.startup_timeout_s
        while True:
            health = self.get_health(timeout=1.0)
            if health is not None:
                self.startup_s = time.monotonic() - t0
                self.health = health
                return self
            if self.proc.poll() is not None:
                text = Path(self.log_path).read_text(errors="replace")[-3000:]
                self.keep_log = True
                self.stop()
                raise RuntimeError(f"cutout serve exited with {self.proc.returncode} (log {self.log_path}): {text}")
            if time.monotonic() > deadline:
                self.keep_log = True
                self.stop()
                raise RuntimeError(f"cutout serve did not answer /health within {self.startup_timeout_s} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful stop), then SIGKILL to the whole session after 30 s."""
        if self.sampler is not None:
            self.sampler.stop()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in its session (workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if not self.keep_log and self.log_path:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    def access_log(self, route: str | None = None) -> list[dict[str, Any]]:
        """Access-log records written so far (needs ``CUTOUT_LOG_LEVEL`` info, the default)."""
        return access_log(self.log_path, route)

    def __enter__(self) -> CutoutServe:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess:
    """A uvicorn server (``kind`` 'ours', 'baseline' or 'floor') in a subprocess; a context manager.

    Parameters
    ----------
    kind : str
        ``"ours"``, ``"baseline"`` or ``"floor"``.
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


def floor_app() -> Any:
    """FastAPI app: ``GET /tesscut/api/v0.1/astrocut`` with /astrocut's query parameters, answering
    a prepared zip of one ``FLOOR_MEMBER_BYTES`` member (see the module docstring)."""
    from fastapi import FastAPI, Query
    from fastapi.responses import Response

    size = int(os.environ.get("FLOOR_MEMBER_BYTES", "65536"))
    name = os.environ.get("FLOOR_MEMBER_NAME", "tess-s0038-2-2_0.000000_0.000000_5x5_astrocut.fits")
    member = b"SIMPLE  =" + bytes(max(0, size - 9))  # a member of our TPF's size, named alike
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(name, member)
    payload = buf.getvalue()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/tesscut/api/v0.1/astrocut")
    async def astrocut(ra: float, dec: float, x: float = 5, y: float | None = None, units: str = "px",
                       sector: list[int] = Query(default=[]), product: str = "SPOC") -> Response:  # noqa: B008
        return Response(payload, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="astrocut.zip"'})

    return app


def cutfloor_app() -> Any:
    """FastAPI app: ``GET /tesscut/api/v0.1/astrocut`` with /astrocut's query parameters, answering
    the real cut of ``CUTFLOOR_CUBE`` zipped, made by the engine on FastAPI's own thread pool (one
    hop; with ``CUTFLOOR_ON_LOOP=1`` on the event loop, no hop) and nothing else (see the module
    docstring)."""
    from fastapi import FastAPI, Query
    from fastapi.responses import Response

    from app.planning.answers import ZipMember
    from app.streaming import zip_bytes
    from core.cubes.cache import open_cube
    from core.tpf.cut import cut_bytes, locate, tpf_filename

    cube = open_cube(os.environ["CUTFLOOR_CUBE"])
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    def astrocut(ra: float, dec: float, x: float = 5, y: float | None = None, units: str = "px",
                 sector: list[int] = Query(default=[]), product: str = "SPOC") -> Response:  # noqa: B008
        geo = locate(cube, f"{ra!r} {dec!r}", (int(y if y is not None else x), int(x)))
        data = cut_bytes(cube, geo).data
        name = tpf_filename(os.environ["CUTFLOOR_CUBE"], geo.ra, geo.dec, geo.window.nx, geo.window.ny)
        payload = zip_bytes([ZipMember(name, lambda cancel: data, data.nbytes, memory_bytes=data.nbytes)])
        return Response(payload, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="astrocut.zip"'})

    if os.environ.get("CUTFLOOR_ON_LOOP") == "1":  # no hop: the cut made on the event loop itself
        async def on_loop(ra: float, dec: float, x: float = 5, y: float | None = None, units: str = "px",
                          sector: list[int] = Query(default=[]), product: str = "SPOC") -> Response:  # noqa: B008
            return astrocut(ra, dec, x, y, units, sector, product)

        app.get("/tesscut/api/v0.1/astrocut")(on_loop)
    else:
        app.get("/tesscut/api/v0.1/astrocut")(astrocut)
    return app


def zipfloor_app() -> Any:
    """FastAPI app streaming a prepared zip (see the module docstring)."""
    import stat
    import zlib
    from datetime import UTC, datetime

    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from stream_zip import NO_COMPRESSION_32, stream_zip

    from app.streaming import CHUNK_SIZE

    sizes = [int(v) for v in os.environ.get("ZIPFLOOR_SIZES", "1048576").split(",") if v]
    blobs = {n: bytes(n) for n in set(sizes)}
    crcs = {n: zlib.crc32(b) for n, b in blobs.items()}
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/tesscut/api/v0.1/astrocut")
    async def astrocut() -> StreamingResponse:
        now = datetime.now(UTC).replace(tzinfo=None)
        files = [(f"m{i}.fits", now, stat.S_IFREG | 0o644, NO_COMPRESSION_32(n, crcs[n]), (blobs[n],))
                 for i, n in enumerate(sizes)]

        async def chunks() -> Any:
            for chunk in stream_zip(files, chunk_size=CHUNK_SIZE):
                yield chunk

        return StreamingResponse(chunks(), media_type="application/zip")

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
    ap.add_argument("kind", choices=["ours", "baseline", "floor", "cutfloor", "zipfloor"])
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
    elif args.kind == "floor":
        app = floor_app()
    elif args.kind == "zipfloor":
        app = zipfloor_app()
    elif args.kind == "cutfloor":
        app = cutfloor_app()
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


def astrocut_s3_env(endpoint_url: str, access_key: str, secret_key: str) -> None:
    """Point astrocut's S3 reads (s3fs through fsspec, boto3) at ``endpoint_url`` with these keys,
    in this process's environment (astrocut takes no endpoint argument)."""
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url
    os.environ["FSSPEC_S3_ENDPOINT_URL"] = endpoint_url
    os.environ["AWS_ACCESS_KEY_ID"] = access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = secret_key
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
