"""HTTP load bench: 5x5 TESScut cutouts against the real service and an astrocut 1.4.0 baseline.

Usage: bench/bench_http_load.py [--quick] [--requests N] [--concurrency C [C ...]] [--cube PATH]
                                [--size 5] [--no-baseline] [--no-floor] [--client raw|httpx]
                                [--profile OUT] [--workers N [N ...]]

Starts (as uvicorn subprocesses on free 127.0.0.1 ports, see ``bench/_server.py``):

- ours: ``app.main.create_app`` over a folder holding one cube (settings from the defaults);
- baseline: a minimal FastAPI app whose endpoint calls astrocut 1.4.0's
  ``CutoutFactory().cube_cut(cube, coord, 5, memory_only=True)`` and answers the TPF zipped.

The cube is a full-size (2078 x 2136) synthetic 100-frame SPOC cube built once under
/tmp/bench-data (``bench_cube_cut.full_cube``); ``--quick`` uses a 256 x 256, 20-frame one.
For each concurrency C, N GET ``/tesscut/api/v0.1/astrocut`` requests (positions drawn with a fixed
seed within 200 px of the cube centre, the same list for both servers) are fired at C at once,
after a warm-up of 2 C requests, by a minimal asyncio HTTP/1.1 keep-alive client (httpx costs ~4 ms
of CPU a request, as much as the server: on 2 cores it would compete with what it measures;
``--client httpx`` for a cross-check). Every answer must be HTTP 200 and a zip holding one
readable FITS; anything else counts as an error. Prints throughput (req/s), p50/p99 latency, errors,
the server's CPU time per request (``/proc/<pid>/stat``: robust to other load on the machine), its
RSS (``VmRSS``) before and after, and ours/baseline ratios. uvicorn uses uvloop and httptools when
installed (``BENCH_UVICORN_PLAIN=1`` forces asyncio + h11 to compare).

The floor: the same requests against a bare FastAPI app on the same uvicorn (``bench/_server.py``
``floor``: the same query parameters, a prepared zip of one member of our TPF's size and name), so
that our server CPU per request is printed beside what FastAPI and uvicorn alone cost
(``--no-floor`` skips it). Beside it ``floor+cut`` (``bench/_server.py`` ``cutfloor``): the same bare
app answering the real cut, made by our engine (locate, cut, zip) on FastAPI's own thread pool:
what any design that keeps the cut off the event loop costs at least on this framework, before
admission, limits, deadlines, request ids, logs and metrics; and ``cut on loop``, the same with the
cut made on the event loop itself (no thread hop: what the service may not do, since a cube read can
block), to show what the hop and the GIL's hand-offs cost.

Targets: ours at concurrency 8 on 2 cores >= 100 req/s with p99 < 250 ms and zero errors; 1,000
requests at concurrency 16 with zero errors and RSS growth < 100 MiB; server CPU per request at
most 2.5x the floor's, measured in the same run.

``--workers N`` (server processes) runs the real ``cutout serve`` instead (``bench/_server.py``
:class:`CutoutServe`; ``--workers N`` of the command: the supervisor and N processes sharing
the port) once with 1 process and once with each N given (``--workers 2``: 1 and 2), the same
requests at concurrency 16 (or ``--concurrency``), and prints for each: requests/s, p50/p99, the
server's CPU time per request summed over its whole process tree (``/proc/<pid>/stat`` of every
process, reaped children included), the tree's RSS (``VmRSS`` summed) after start-up and after the
run, and the memory each extra process costs: (tree RSS with N - tree RSS with 1) / (N - 1), idle
and after the run. The astrocut baseline runs as without ``--workers`` (unless --no-baseline).
Without ``--workers`` the bench behaves and prints exactly as before.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from _server import CutoutServe, ServerProcess

DATA = Path(os.environ.get("BENCH_DATA", "/tmp/bench-data"))
API = "/tesscut/api/v0.1/astrocut"
#: RSS growth allowed over a 1,000-request run (no leak under load)
RSS_GROWTH_LIMIT_MB = 100
#: our server CPU per request, at most this many times the bare-FastAPI floor's
FLOOR_RATIO = 2.5


@dataclass
class LoadResult:
    """What one load run measured."""

    name: str
    requests: int
    concurrency: int
    wall_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]

    def line(self) -> str:
        return (f"{self.name:<9} c={self.concurrency:<3} n={self.requests:<5} {self.rps:7.1f} req/s  "
                f"p50 {self.pct(50):6.1f} ms  p99 {self.pct(99):6.1f} ms  errors {len(self.errors):<3} "
                f"server CPU {self.server_cpu_s / self.requests * 1e3:5.1f} ms/req  "
                f"RSS {self.rss_before_mb:6.1f} -> {self.rss_after_mb:6.1f} MiB "
                f"({self.rss_after_mb - self.rss_before_mb:+.1f})")


def check_zip(content: bytes) -> str | None:
    """None if ``content`` is a zip of exactly one FITS file, else what is wrong."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = zf.namelist()
            if len(names) != 1 or not names[0].endswith(".fits"):
                return f"zip members {names!r}"
            data = zf.read(names[0])  # checks the CRC
    except zipfile.BadZipFile as exc:
        return f"bad zip: {exc}: {content[:160]!r}"
    if not data.startswith(b"SIMPLE  =") or len(data) % 2880:
        return "member is not a FITS file"
    return None


def positions(cube: str, n: int, seed: int = 0, spread_px: float = 200.0) -> list[tuple[float, float]]:
    """``n`` (ra, dec) within ``spread_px`` pixels of the cube's centre (seeded)."""
    from core.cubes.cache import open_cube

    c = open_cube(cube)
    rng = random.Random(seed)
    spread_px = min(spread_px, c.nx / 2 - 10, c.ny / 2 - 10)
    out = []
    for _ in range(n):
        x = c.nx / 2 + rng.uniform(-spread_px, spread_px)
        y = c.ny / 2 + rng.uniform(-spread_px, spread_px)
        sky = c.wcs.pixel_to_world(x, y)
        out.append((float(sky.ra.deg), float(sky.dec.deg)))
    return out


class _Conn:
    """A minimal HTTP/1.1 keep-alive client connection (asyncio streams).

    httpx spends ~4 ms of CPU per request, as much as the server: on 2 cores the load generator
    would be what is measured. This one sends a fixed GET and reads a Content-Length or chunked
    body (~0.2 ms per request). ``--client httpx`` uses httpx instead, for a cross-check.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _fire(url: str, coords: list[tuple[float, float]], concurrency: int, size: int,
                latencies: list[float], errors: list[str], client: str = "raw") -> float:
    from urllib.parse import urlencode, urlsplit

    queue: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
    for c in coords:
        queue.put_nowait(c)
    parts = urlsplit(url)

    async def worker(get) -> None:
        while True:
            try:
                ra, dec = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            target = API + "?" + urlencode({"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "x": size, "y": size,
                                            "units": "px"})
            t0 = time.perf_counter()
            try:
                status, content = await asyncio.wait_for(get(target), 60)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - t0) * 1e3)
            if status != 200:
                errors.append(f"HTTP {status}: {content[:200]!r}")
                continue
            problem = check_zip(content)
            if problem:
                errors.append(problem)

    t0 = time.perf_counter()
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as hc:

            async def hget(target: str) -> tuple[int, bytes]:
                r = await hc.get(target)
                return r.status_code, r.content

            await asyncio.gather(*(worker(hget) for _ in range(concurrency)))
    else:
        conns = [_Conn(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(concurrency)]

        async def guarded(conn: _Conn) -> None:
            async def get(target: str) -> tuple[int, bytes]:
                try:
                    return await conn.get(target)
                except BaseException:
                    await conn.close()  # a broken connection is not reused
                    raise

            await worker(get)

        try:
            await asyncio.gather(*(guarded(c) for c in conns))
        finally:
            for c in conns:
                await c.close()
    return time.perf_counter() - t0


def run_load(server: ServerProcess, name: str, coords: list[tuple[float, float]], concurrency: int,
             size: int = 5, client: str = "raw") -> LoadResult:
    """Fire ``coords`` at ``server`` (after a warm-up) and measure."""
    warm: list[float] = []
    warm_errors: list[str] = []
    asyncio.run(_fire(server.url, coords[: 2 * concurrency], concurrency, size, warm, warm_errors, client))
    if warm_errors:
        print(f"  {name}: warm-up errors: {warm_errors[:3]}")
    result = LoadResult(name, len(coords), concurrency, 0.0)
    result.rss_before_mb = server.rss_kb() / 1024
    cpu0 = server.cpu_s()
    result.wall_s = asyncio.run(_fire(server.url, coords, concurrency, size, result.latencies_ms,
                                      result.errors, client))
    result.server_cpu_s = server.cpu_s() - cpu0
    result.rss_after_mb = server.rss_kb() / 1024
    return result


def one_member(server: ServerProcess, coord: tuple[float, float], size: int) -> tuple[str, bytes]:
    """The name and bytes of the one TPF in our answer for ``coord`` (the floor answers its size)."""
    from urllib.parse import urlencode

    q = urlencode({"ra": f"{coord[0]:.7f}", "dec": f"{coord[1]:.7f}", "x": size, "y": size, "units": "px"})
    r = httpx.get(f"{server.url}{API}?{q}", timeout=60)
    if r.status_code != 200 or not r.content.startswith(b"PK"):
        raise SystemExit(f"ours answered {r.status_code} {r.headers.get('content-type')}: {r.text[:300]}")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        (name,) = zf.namelist()
        return name, zf.read(name)


def _place(cube: Path, target: Path) -> None:
    """Put ``cube`` in the served folder: a hard link (the service follows no link out of its
    cube folders), a copy across file systems."""
    try:
        os.link(cube, target)
    except OSError:
        shutil.copyfile(cube, target)


def quick_cube() -> Path:
    """A 256 x 256, 20-frame synthetic cube under /tmp/bench-data (built once)."""
    out = DATA / "quick-256-20" / "tess-s0038-2-2-cube.fits"
    if out.exists():
        return out
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    with tempfile.TemporaryDirectory() as tmp:
        sector = write_sector(Path(tmp), size=(256, 256), frames=20, seed=0)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(part), verbose=False)
        os.replace(part, out)
    return out


def run_workers(processes: list[int], cube_dir: Path, work: Path, coords: list[tuple[float, float]],
                concurrency: list[int], size: int, client: str) -> tuple[dict[tuple[int, int], LoadResult], bool]:
    """The load against ``cutout serve --workers P`` for each P; prints one line per run and the
    memory of each extra process. Returns the results by (P, C) and whether every server started."""
    results: dict[tuple[int, int], LoadResult] = {}
    idle: dict[int, float] = {}
    after: dict[int, float] = {}
    workers: dict[int, list[float]] = {}
    ok = True
    for p in processes:
        env = {"CUTOUT_CUBE_DIRS": str(cube_dir), "CUTOUT_WORK_DIR": str(work / f"p{p}"),
               "CUTOUT_LOG_LEVEL": "warning", "CUTOUT_INDEX_REFRESH_S": "0"}
        try:
            # a ceiling far above what 5x5 cuts need: a runaway tree is killed, not the machine
            with CutoutServe(env, workers=p, ceiling_kb=6 * 2**20) as srv:
                time.sleep(1.0)  # every process has started and built its app
                idle[p] = srv.tree_rss_kb() / 1024
                table = srv.tree_table()
                workers[p] = [kb / 1024 for _pid, kb, role in table if role == "worker"]
                print(f"cutout serve --workers {p}: tree " + ", ".join(
                    f"{role} {kb / 1024:.0f} MiB" for _pid, kb, role in table), flush=True)
                for c in concurrency:
                    res = results[(p, c)] = run_load(srv, f"ours x{p}", coords, c, size, client)
                    print(f"{res.line()}  [{len(srv.pids())} processes in the tree]", flush=True)
                    for e in res.errors[:5]:
                        print("   error:", e)
                after[p] = srv.tree_rss_kb() / 1024
        except RuntimeError as exc:
            text = str(exc).strip().splitlines()[-1][:300]
            print(f"cutout serve --workers {p} FAILED: {text}")
            ok = False
    base = processes[0]
    for p in processes[1:]:
        if p in idle and base in idle and p > base:
            extra = p - base
            print(f"memory per extra process ({base} -> {p} processes): idle {(idle[p] - idle[base]) / extra:.1f} MiB, "
                  f"after the run {(after[p] - after[base]) / extra:.1f} MiB  (tree RSS {idle[base]:.0f} -> "
                  f"{idle[p]:.0f} MiB idle, {after[base]:.0f} -> {after[p]:.0f} MiB after; it includes the "
                  f"supervisor process)")
            if workers.get(p):
                print(f"  each worker process idle: {', '.join(f'{w:.0f}' for w in workers[p])} MiB")
        for c in concurrency:
            if (p, c) in results and (base, c) in results:
                a, b = results[(base, c)], results[(p, c)]
                print(f"c={c}: {p} processes / {base}: throughput {b.rps / a.rps:.2f}x, "
                      f"server CPU per request {b.server_cpu_s / b.requests * 1e3:.1f} vs "
                      f"{a.server_cpu_s / a.requests * 1e3:.1f} ms")
    return results, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cube, 200 requests")
    ap.add_argument("--requests", type=int, default=None, help="requests per run (default 1000)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--cube", default=None, help="cube file (default: the full-size synthetic one)")
    ap.add_argument("--size", type=int, default=5, help="cutout side, pixels")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-floor", action="store_true", help="skip the bare-FastAPI floor")
    ap.add_argument("--baseline-requests", type=int, default=None,
                    help="requests per baseline run (default 200, 50 with --quick: astrocut serves ~4 req/s)")
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="load generator: a minimal asyncio HTTP/1.1 client (default) or httpx")
    ap.add_argument("--profile", default=None, help="cProfile ours' worker threads into this file")
    ap.add_argument("--workers", type=int, nargs="+", default=None, metavar="N",
                    help="server processes: run 'cutout serve' with 1 and with each N (concurrency 16)")
    args = ap.parse_args(argv)
    if args.workers is not None:
        if any(w < 1 for w in args.workers):
            ap.error("--workers takes counts >= 1")
        if "--concurrency" not in (argv if argv is not None else sys.argv[1:]):
            args.concurrency = [16]
    n = args.requests or (200 if args.quick else 1000)
    if args.baseline_requests is None:
        args.baseline_requests = 50 if args.quick else 200

    if args.cube:
        cube = Path(args.cube)
    elif args.quick:
        cube = quick_cube()
    else:
        from bench_cube_cut import full_cube

        cube = full_cube(100)
    cube_dir = Path(tempfile.mkdtemp(prefix="load-cubes-"))
    _place(cube.resolve(), cube_dir / "tess-s0038-2-2-cube.fits")
    work = Path(tempfile.mkdtemp(prefix="load-work-"))
    coords = positions(str(cube), n, seed=0)
    print(f"cube {cube} ({cube.stat().st_size / 2**20:.0f} MiB); {n} requests of {args.size}x{args.size} px; "
          f"{os.cpu_count()} cores")

    if args.workers is not None:
        return workers_main(args, cube, cube_dir, work, coords)
    ours_env = {"CUTOUT_CUBE_DIRS": str(cube_dir), "CUTOUT_WORK_DIR": str(work), "CUTOUT_LOG_LEVEL": "warning"}
    results: dict[tuple[str, int], LoadResult] = {}
    with ServerProcess("ours", ours_env, profile=args.profile) as ours:
        member = one_member(ours, coords[0], args.size)
        for c in args.concurrency:
            res = results[("ours", c)] = run_load(ours, "ours", coords, c, args.size, args.client)
            print(res.line(), flush=True)
            for e in res.errors[:5]:
                print("   error:", e)
    if not args.no_floor:
        floor_env = {"FLOOR_MEMBER_BYTES": str(len(member[1])), "FLOOR_MEMBER_NAME": member[0]}
        with ServerProcess("floor", floor_env) as floor:
            for c in args.concurrency:
                res = results[("floor", c)] = run_load(floor, "floor", coords, c, args.size, args.client)
                print(res.line(), "(bare FastAPI, same parameters, a zip of our size)", flush=True)
        with ServerProcess("cutfloor", {"CUTFLOOR_CUBE": str(cube)}) as cutfloor:
            for c in args.concurrency:
                res = results[("cutfloor", c)] = run_load(cutfloor, "floor+cut", coords, c, args.size, args.client)
                print(res.line(), "(the same, the zip cut by our engine on FastAPI's thread pool)", flush=True)
        with ServerProcess("cutfloor", {"CUTFLOOR_CUBE": str(cube), "CUTFLOOR_ON_LOOP": "1"}) as cutloop:
            for c in args.concurrency:
                res = results[("cutloop", c)] = run_load(cutloop, "cut on loop", coords, c, args.size, args.client)
                print(res.line(), "(the same, the cut on the event loop: no hop; not allowed in the service)",
                      flush=True)
        for c in args.concurrency:
            o, f = results[("ours", c)], results[("floor", c)]
            k, j = results[("cutfloor", c)], results[("cutloop", c)]
            ratio = (o.server_cpu_s / o.requests) / (f.server_cpu_s / f.requests)
            print(f"ratio c={c}: server CPU per request ours/floor {ratio:.2f}x "
                  f"({o.server_cpu_s / o.requests * 1e3:.2f} vs {f.server_cpu_s / f.requests * 1e3:.2f} ms), "
                  f"floor+cut/floor {k.server_cpu_s / f.server_cpu_s:.2f}x ({k.server_cpu_s / k.requests * 1e3:.2f} ms), "
                  f"cut on loop/floor {j.server_cpu_s / f.server_cpu_s:.2f}x ({j.server_cpu_s / j.requests * 1e3:.2f} ms); "
                  f"throughput ours/floor {o.rps / f.rps:.2f}x")
    if not args.no_baseline:
        with ServerProcess("baseline", {"BASELINE_CUBE": str(cube)}) as base:
            for c in args.concurrency:
                res = results[("baseline", c)] = run_load(base, "baseline", coords[: args.baseline_requests], c,
                                                          args.size, args.client)
                print(res.line(), flush=True)
                for e in res.errors[:5]:
                    print("   error:", e)
        for c in args.concurrency:
            o, b = results[("ours", c)], results[("baseline", c)]
            print(f"ratio c={c}: throughput ours/astrocut {o.rps / b.rps:.1f}x; "
                  f"p50 astrocut/ours {b.pct(50) / o.pct(50):.1f}x; p99 astrocut/ours {b.pct(99) / o.pct(99):.1f}x")

    verdicts = []
    for c in args.concurrency:
        if ("floor", c) in results:
            o, f = results[("ours", c)], results[("floor", c)]
            ratio = (o.server_cpu_s / o.requests) / (f.server_cpu_s / f.requests)
            verdicts.append((f"c={c}: server CPU per request <= {FLOOR_RATIO:g}x the bare-FastAPI floor ({ratio:.2f}x)",
                             ratio <= FLOOR_RATIO))
    if ("ours", 8) in results:
        r = results[("ours", 8)]
        verdicts.append(("c=8 >= 100 req/s, p99 < 250 ms, 0 errors",
                         r.rps >= 100 and r.pct(99) < 250 and not r.errors))
    if ("ours", 16) in results and n >= 1000:
        r = results[("ours", 16)]
        verdicts.append((f"{n} req at c=16, 0 errors, RSS growth < {RSS_GROWTH_LIMIT_MB} MiB",
                         not r.errors and r.rss_after_mb - r.rss_before_mb < RSS_GROWTH_LIMIT_MB))
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    if args.profile:
        import pstats

        print(f"\nprofile of ours' worker threads ({args.profile}):")
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(30)
    if any(r.errors for r in results.values()):
        return 1
    # --quick is the CI smoke test on a small cube and a busy machine: timing targets are reported,
    # never fatal there (speed is judged on full runs, not in tests).
    return 0 if args.quick or all(ok for _, ok in verdicts) else 1


def workers_main(args: argparse.Namespace, cube: Path, cube_dir: Path, work: Path,
                 coords: list[tuple[float, float]]) -> int:
    """``--workers``: the real ``cutout serve`` with 1 and N processes, then the baseline."""
    processes = sorted({1, *args.workers})
    print(f"cutout serve with {' and '.join(map(str, processes))} process(es); concurrency {args.concurrency}")
    results, started = run_workers(processes, cube_dir, work, coords, args.concurrency, args.size, args.client)
    errors = any(r.errors for r in results.values())
    if not args.no_baseline:
        with ServerProcess("baseline", {"BASELINE_CUBE": str(cube)}) as base:
            for c in args.concurrency:
                res = run_load(base, "baseline", coords[: args.baseline_requests], c, args.size, args.client)
                print(res.line(), "(astrocut 1.4.0 behind FastAPI, 1 process)", flush=True)
                errors = errors or bool(res.errors)
                for p in processes:
                    if (p, c) in results:
                        o = results[(p, c)]
                        print(f"ratio c={c}: throughput ours x{p}/astrocut {o.rps / res.rps:.1f}x; "
                              f"p99 astrocut/ours x{p} {res.pct(99) / o.pct(99):.1f}x")
    return 1 if errors or not started else 0


if __name__ == "__main__":
    raise SystemExit(main())
