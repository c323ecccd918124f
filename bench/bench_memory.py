"""Memory bench: server peak RSS per request for big cutouts of a real-size cube, streamed.

Usage: bench/bench_memory.py [--quick] [--concurrency 1 4 8] [--side 200] [--frames 3705]
                             [--big-side 1000] [--ceiling-gb 6] [--load-requests 300] [--no-load]
                             [--prev-root DIR [--prev-concurrency 1] [--prev-ceiling-gb 5]]

One real-size sparse cube (:func:`core.synthetic.archive.write_sparse_cube`: 2078 x 2136 px x
3,705 frames x 2 planes, 132 GB apparent, ~4 MB on disk: real headers and table, the data a hole)
and a 24-frame one of another sector, served by the real ``cutout serve`` (one process, default
settings: memory and disk budgets, streamed zips; the pixel spool in a temporary work dir).

Memory is the server's whole process tree: ``VmRSS`` summed over the uvicorn process and any
children, from ``/proc``, sampled every 0.2 s (:class:`bench._server.RssSampler`); "idle" is the
figure just before a case, "peak" the highest sample while it ran, and "above idle" their
difference, what the case cost. The sampler kills the tree past ``--ceiling-gb`` (default 6 GiB),
so a regression cannot take the machine down.

Cases (each answer must be HTTP 200 and a complete zip whose members' CRC-32s, recomputed while
streaming, match the zip's and a single request's):

- C concurrent ``x=200&y=200`` ``/tesscut/api/v0.1/astrocut`` for C in 1, 4, 8: 148 M
  pixel-frames, a ~3 GB zip each. The client reads each body as it arrives and discards it: a
  minimal asyncio HTTP/1.1 client feeds :class:`bench._client.ZipStreamCheck`, which inflates the
  stream and checks every member's CRC (the client holds one chunk, ~1 MB, per request).
- a 1000x1000 ``/preview/cube.png`` (median frame) and a 1000x1000 ``/astrocut`` (24 M
  pixel-frames, ~0.5 GB) on the 24-frame cube.
- the throughput of 5x5 ``/astrocut`` cuts at concurrency 16 (a short run of
  ``bench_http_load``'s load client on the 3,705-frame cube; bench_http_load itself uses a
  100-frame cube, so its per-request figures are ~37x smaller).

Anchor: the figures of issue #17 for the previous design (which built a whole TPF in memory):
4.2 GB peak for one 200x200 request and 11.9 GB for three, printed as "previous design (issue
#17)". With ``--prev-root`` (a worktree of that commit, e.g. d3c318f, with its own ``.venv``) the
previous design is measured here too, under its own low ceiling (``--prev-ceiling-gb``; a tree
killed there is reported as "> ceiling").

``--quick`` (the CI smoke test): a 100-frame cube, C = 1 and 2, a 300x300 preview and cut, 64 load
requests; it asserts only that every answer is complete and correct.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")

from _client import Conn, ZipStreamCheck
from _server import CeilingExceeded, CutoutServe

from core.synthetic.archive import write_sparse_cube

API = "/tesscut/api/v0.1"
DATA = Path(os.environ.get("BENCH_DATA", "/tmp/bench-data"))
MiB_KB = 1024
#: issue #17: the previous design's peak RSS for one and for three 200x200 requests (GB)
PREVIOUS = {1: 4.2, 3: 11.9}
BIG = (38, 2, 2)  # sector, camera, CCD of the real-size cube
SMALL = (39, 2, 2)  # of the 24-frame cube


@dataclass
class Case:
    """What one case measured."""

    label: str
    answers: int = 0
    wall_s: float = 0.0
    idle_kb: int = 0
    peak_kb: int = 0
    body_bytes: int = 0
    members: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""
    fresh_kb: int = 0  # the server's idle RSS right after start-up

    @property
    def above_mib(self) -> float:
        return (self.peak_kb - self.idle_kb) / MiB_KB

    def line(self, anchor: str = "") -> str:
        per = self.above_mib / self.answers if self.answers else float("nan")
        fresh = (self.peak_kb - self.fresh_kb) / MiB_KB if self.fresh_kb else float("nan")
        return (f"  {self.label:<36} {self.answers:>3} {self.wall_s:8.1f} {self.body_bytes / 1e9:8.2f} "
                f"{self.idle_kb / MiB_KB:8.0f} {self.peak_kb / MiB_KB:8.0f} {self.above_mib:9.0f} {per:9.0f} "
                f"{fresh:10.0f}  {anchor}")


HEADER = (f"  {'case':<36} {'ok':>3} {'wall s':>8} {'GB sent':>8} {'idle MiB':>8} {'peak MiB':>8} "
          f"{'above MiB':>9} {'per req':>9} {'vs start':>10}  anchor\n"
          f"  ('idle': the tree just before the case; 'above': peak - idle; 'vs start': peak - the idle "
          f"figure right after start-up)")


def cubes(root: Path, frames: int) -> tuple[Path, Path]:
    """The real-size cube (``frames`` frames) and the 24-frame one, in one folder (made once)."""
    folder = root / f"memory-{frames}f"
    big = folder / f"tess-s{BIG[0]:04d}-{BIG[1]}-{BIG[2]}-cube.fits"
    small = folder / f"tess-s{SMALL[0]:04d}-{SMALL[1]}-{SMALL[2]}-cube.fits"
    if not big.exists():
        write_sparse_cube(big, sector=BIG[0], camera=BIG[1], ccd=BIG[2], frames=frames)
    if not small.exists():
        write_sparse_cube(small, sector=SMALL[0], camera=SMALL[1], ccd=SMALL[2], frames=24)
    return big, small


def centre(path: Path) -> tuple[float, float]:
    """Sky position of the middle of a cube's science pixels (from its own WCS)."""
    from core.cubes.cache import open_cube

    ra, dec = open_cube(path).wcs.all_pix2world(1068.3, 1024.6, 0)
    return float(ra) % 360.0, float(dec)


def target(route: str, ra: float, dec: float, side: int, sector: int) -> str:
    q = {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "x": side, "y": side, "sector": sector}
    if route == "astrocut":
        q["units"] = "px"
    return (f"{API}/astrocut?" if route == "astrocut" else "/preview/cube.png?") + urlencode(q)


async def _stream_zip(port: int, path: str) -> tuple[int, list[Any], int, str]:
    conn = Conn("127.0.0.1", port)
    check = ZipStreamCheck()
    try:
        resp = await conn.get(path, sink=check.feed)
    except (OSError, asyncio.IncompleteReadError) as exc:
        return 0, [], check.nbytes, f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close()
    if resp.status != 200:
        return resp.status, [], resp.nbytes, f"HTTP {resp.status}"
    try:
        return resp.status, check.close(), resp.nbytes, ""
    except ValueError as exc:
        return resp.status, [], resp.nbytes, str(exc)


async def _many(port: int, path: str, c: int) -> list[tuple[int, list[Any], int, str]]:
    return list(await asyncio.gather(*(_stream_zip(port, path) for _ in range(c))))


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, or None if ``data`` is not one."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def zip_case(srv: CutoutServe, label: str, path: str, c: int, reference: list[Any] | None) -> Case:
    """``c`` concurrent streamed zips of ``path``: peak tree RSS above idle, every answer checked."""
    assert srv.sampler is not None
    time.sleep(0.5)
    case = Case(label, fresh_kb=getattr(srv, "fresh_kb", 0))
    t0 = time.perf_counter()
    with srv.sampler.window() as w:
        results = asyncio.run(_many(srv.port, path, c))
    case.wall_s = time.perf_counter() - t0
    case.idle_kb, case.peak_kb = w.start_kb, w.peak_kb
    for status, members, nbytes, error in results:
        case.body_bytes += nbytes
        if error:
            case.errors.append(error)
            continue
        if len(members) != 1 or not members[0].name.endswith(".fits"):
            case.errors.append(f"members {members}")
            continue
        if reference is not None and members != reference:
            case.errors.append(f"members {members} differ from a single request's {reference}")
            continue
        case.answers += 1
        case.members = members
        del status
    if srv.sampler.exceeded_kb is not None:
        case.note = f"killed at the ceiling ({srv.sampler.exceeded_kb / 2**20:.1f} GiB)"
    return case


def png_case(srv: CutoutServe, label: str, path: str, side: int) -> Case:
    assert srv.sampler is not None
    time.sleep(0.5)
    case = Case(label, fresh_kb=getattr(srv, "fresh_kb", 0))

    async def one() -> Any:
        conn = Conn("127.0.0.1", srv.port)
        try:
            return await conn.get(path)
        finally:
            await conn.close()

    t0 = time.perf_counter()
    with srv.sampler.window() as w:
        try:
            resp = asyncio.run(one())
        except (OSError, asyncio.IncompleteReadError) as exc:
            resp = None
            case.errors.append(f"{type(exc).__name__}: {exc}")
    case.wall_s = time.perf_counter() - t0
    case.idle_kb, case.peak_kb = w.start_kb, w.peak_kb
    if resp is not None:
        case.body_bytes = resp.nbytes
        size = png_size(resp.body)
        if resp.status != 200 or size != (side, side):
            case.errors.append(f"HTTP {resp.status}, PNG size {size}, expected {(side, side)}: {resp.body[:120]!r}")
        else:
            case.answers = 1
    return case


def serve_env(folder: Path, work: Path) -> dict[str, str]:
    return {"CUTOUT_CUBE_DIRS": str(folder), "CUTOUT_WORK_DIR": str(work), "CUTOUT_INDEX_REFRESH_S": "0",
            "CUTOUT_LOG_LEVEL": "warning"}


def report(case: Case, anchor: str = "") -> None:
    print(case.line(anchor), flush=True)
    for e in case.errors[:3]:
        print(f"    error: {e[:300]}")
    if case.note:
        print(f"    {case.note}")


def previous_design(root: Path, folder: Path, work: Path, path: str, concurrency: list[int], ceiling_gb: float,
                    reference: list[Any] | None) -> None:
    """The previous commit's server (its own worktree and venv) on the same cube, low ceiling."""
    python = root / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"  previous design: {python} missing (run scripts/bootstrap.sh in {root})")
        return
    for c in concurrency:
        env = serve_env(folder, work / f"prev-{c}")
        try:
            with CutoutServe(env, root=root, python=python, ceiling_kb=int(ceiling_gb * 2**20)) as prev:
                prev.fresh_kb = prev.tree_rss_kb()
                case = zip_case(prev, f"previous design ({root.name}): {c} x 200x200", path, c, None)
        except (RuntimeError, CeilingExceeded) as exc:
            print(f"  previous design: {exc}")
            continue
        if case.note:
            case.note += f": the previous design needs more than {ceiling_gb:g} GiB for {c} request(s)"
        same = "" if reference is None or not case.members or case.members == reference else \
            " (members differ from ours)"
        report(case, f"measured here, ceiling {ceiling_gb:g} GiB{same}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100-frame cube, C = 1 and 2, 300x300 (CI smoke test)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=None, help="concurrent 200x200 cuts (1 4 8)")
    ap.add_argument("--side", type=int, default=200, help="side of the big cuts, pixels")
    ap.add_argument("--frames", type=int, default=None, help="frames of the big cube (3705; 100 with --quick)")
    ap.add_argument("--big-side", type=int, default=None, help="preview and cut side on the 24-frame cube (1000)")
    ap.add_argument("--ceiling-gb", type=float, default=6.0, help="kill the server past this tree RSS")
    ap.add_argument("--load-requests", type=int, default=None, help="5x5 requests of the load run (300)")
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for our server (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=1048576")
    ap.add_argument("--prev-root", type=Path, default=None, help="worktree of the previous design, with .venv")
    ap.add_argument("--prev-concurrency", type=int, nargs="+", default=[1])
    ap.add_argument("--prev-ceiling-gb", type=float, default=5.0)
    args = ap.parse_args(argv)
    quick = args.quick
    conc = args.concurrency or ([1, 2] if quick else [1, 4, 8])
    frames = args.frames or (100 if quick else 3705)
    big_side = args.big_side or (300 if quick else 1000)
    load_n = args.load_requests or (64 if quick else 300)

    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    root = tmp if quick else DATA
    big, small = cubes(root, frames)
    work = tmp / "work"
    pf = args.side * args.side * frames
    print(f"bench_memory: cube {big.name} 2078x2136 px x {frames} frames ({big.stat().st_size / 1e9:.0f} GB "
          f"apparent, sparse) and {small.name} x 24 frames; {os.cpu_count()} cores; tree RSS sampled every "
          f"0.2 s, ceiling {args.ceiling_gb:g} GiB", flush=True)
    ra, dec = centre(big)
    big_path = target("astrocut", ra, dec, args.side, BIG[0])
    sra, sdec = centre(small)
    problems = 0
    try:
        extra = dict(item.split("=", 1) for item in args.server_env)
        if extra:
            print(f"server environment added: {extra}")
        with CutoutServe({**serve_env(big.parent, work), **extra}, ceiling_kb=int(args.ceiling_gb * 2**20)) as srv:
            budget = srv.health.get("budget", {})
            time.sleep(0.5)
            srv.fresh_kb = srv.tree_rss_kb()
            print(f"server: /health after {srv.startup_s:.1f} s, idle RSS {srv.fresh_kb / MiB_KB:.0f} MiB; "
                  f"memory budget {budget.get('memory_bytes', 0) / 2**30:.1f} GiB, disk budget "
                  f"{budget.get('disk_bytes', 0) / 2**30:.1f} GiB", flush=True)
            print(HEADER)
            reference = None
            for c in conc:
                case = zip_case(srv, f"{c} x {args.side}x{args.side} /astrocut ({pf / 1e6:.0f} M px-fr)", big_path, c,
                                reference)
                if reference is None and case.members:
                    reference = case.members
                if c == 1:
                    anchor = f"previous design (issue #17): {PREVIOUS[1]:.1f} GB peak for 1"
                else:
                    anchor = f"previous design (issue #17): {PREVIOUS[3]:.1f} GB peak for 3"
                report(case, anchor)
                problems += len(case.errors) + (case.answers != c)
                srv.sampler.check()
            case = png_case(srv, f"{big_side}x{big_side} /preview/cube.png (24 fr)",
                            target("preview", sra, sdec, big_side, SMALL[0]), big_side)
            report(case)
            problems += len(case.errors) + (case.answers != 1)
            case = zip_case(srv, f"{big_side}x{big_side} /astrocut (24 fr)",
                            target("astrocut", sra, sdec, big_side, SMALL[0]), 1, None)
            report(case)
            problems += len(case.errors) + (case.answers != 1)
            srv.sampler.check()
            if not args.no_load:
                from bench_http_load import positions, run_load

                coords = positions(str(big), load_n, seed=0)
                res = run_load(srv, "ours", coords, 16, 5)
                print(f"\n5x5 load on the {frames}-frame cube (bench_http_load's client; its own bench uses a "
                      f"100-frame cube):\n  {res.line()}")
                for e in res.errors[:3]:
                    print(f"    error: {e[:300]}")
                problems += len(res.errors)
            time.sleep(1.0)
            health = srv.get_health() or {}
            budget, cache = health.get("budget", {}), health.get("cube_cache", {})
            print(f"budget after: admitted {budget.get('admitted')}, refused {budget.get('refused')}, "
                  f"too large {budget.get('too_large')}; idle RSS now {srv.tree_rss_kb() / MiB_KB:.0f} MiB "
                  f"(after start-up {srv.fresh_kb / MiB_KB:.0f} MiB): kept after the requests ended; of it the cube "
                  f"cache holds {cache.get('bytes', 0) / 2**20:.0f} MiB (max {cache.get('max_bytes', 0) / 2**20:.0f})",
                  flush=True)
        print("  astrocut 1.4.0 has no server: the anchor for memory is the previous design's figures (issue #17)")
        if args.prev_root is not None:
            previous_design(args.prev_root, big.parent, work, big_path, args.prev_concurrency, args.prev_ceiling_gb,
                            reference)
    except CeilingExceeded as exc:
        print(f"stopped: {exc}")
        problems += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print(f"\n{problems} problem(s): answers were incomplete or wrong")
        return 1
    print("\nall answers complete and correct")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
