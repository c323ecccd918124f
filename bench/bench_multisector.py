"""All sectors at once: a 30x30 ``/astrocut`` of one target on 12 hosted sectors, beside one sector.

Usage: bench/bench_multisector.py [--quick] [--prev-root DIR] [--frames 1300] [--runs 5]
                                  [--delay-ms 50] [--no-s3] [--no-local] [--no-astrocut]

The archive: 12 sparse real-size cubes (2078 x 2136 px x ``--frames`` frames x 2 planes, the data
region a hole, the real headers and table: :func:`core.synthetic.archive.write_sparse_cube`), all
holding RA 217.42893801 Dec -62.67949189. Ten are the sectors/cameras/CCDs whose real footprints
(tesswcs's archived WCS, or the latest one rotated onto the sector's pointing) contain it: 11 2-2,
12 2-1, 38 2-2, 65 2-2, 99 4-4, 100 3-4, 101 3-1, 102 2-4, 113 4-1, 114 3-4; two more, sectors 92
and 93 (camera 2, CCD 2), share sector 65's footprint (its cube with the primary header's SECTOR
rewritten). Every cube has the same number of frames, so that every member costs the same.

The request is the issue's: ``/tesscut/api/v0.1/astrocut?ra=217.42893801&dec=-62.67949189&x=30&y=30
&units=px`` with no ``sector`` (all 12), beside the same with ``sector=38`` (one). Through HTTP, the
real ``cutout serve`` in a subprocess (``bench/_server.py`` :class:`CutoutServe`), the whole zip
received and checked as it arrives (every member's CRC recomputed, :class:`_client.ZipStreamCheck`):

S3      the cubes on s3rver behind a proxy adding ``--delay-ms`` to every request (one round trip per
        GET; ``tests/latency_proxy.py``), the catalog index built at start-up: warm medians of one
        sector and of all sectors, and the first all-sectors request of a server just started (no
        cube opened yet; the index file kept from the first start, as a restarted service has it),
        median of ``--runs`` restarts; GETs counted at the proxy. Beside them the floor: the row
        ranges of one cut, and of all 12, read with every range in flight at once
        (``core.storage.sources``, bytes only, in this process through the same proxy).
local   the same cubes on local disk, the same figures; beside them the transfer's floor: a zip of
        the same members' sizes streamed from memory by a bare FastAPI app on the same uvicorn, to
        the same client (sending 282 MB to a client on the same 2 cores is most of the time).

Each figure is taken for this checkout ("ours") and, with ``--prev-root``, for another checkout of
the service ("prev": today's design, e.g. ``git worktree add /work/wt-prev <commit>``) run with this
interpreter, in the same run: both servers run side by side and are asked in turn, so that a busy
moment of this shared machine weighs on both. The zips' members must be byte-identical between
the two (names, CRC-32 and sizes compared). The anchor: astrocut 1.4.0
``CutoutFactory().cube_cut(..., threads=8)`` looping over the 12 cubes (local files; and on S3
through s3fs, through the same proxy).

The issue's targets, printed as met or not: S3 warm all-sectors <= 2x a warm single-sector request,
first all-sectors request <= 4x; local all-sectors at least 1.5x faster than prev's.
``--quick`` (the CI smoke test): 120 frames, 2 runs, 5 ms delay; figures printed, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
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

from _client import get_zip
from _server import CutoutServe, astrocut_s3_env, tree_cpu_s

API = "/tesscut/api/v0.1"
DATA = Path(os.environ.get("BENCH_DATA", "/tmp/bench-data"))
RA, DEC = 217.42893801, -62.67949189
SIDE = 30
ONE_SECTOR = 38
#: (sector, camera, ccd) of the cubes; the last two share sector 65's footprint (see the docstring)
REAL = [(11, 2, 2), (12, 2, 1), (38, 2, 2), (65, 2, 2), (99, 4, 4), (100, 3, 4), (101, 3, 1), (102, 2, 4),
        (113, 4, 1), (114, 3, 4)]
SHARED = [(92, (65, 2, 2)), (93, (65, 2, 2))]


# ------------------------------------------------------------------------------------------------
# the archive


def _set_sector(path: Path, sector: int) -> None:
    """Rewrite the SECTOR card of a cube's primary header in place (same length: one card)."""
    with open(path, "r+b") as fh:
        head = fh.read(2880 * 4)
        at = head.find(b"SECTOR  = ")
        if at < 0 or at % 80:
            raise RuntimeError(f"{path}: no SECTOR card")
        fh.seek(at + 10)
        fh.write(f"{sector:>20d}".encode())


def build_cubes(root: Path, frames: int) -> list[Path]:
    """The 12 cubes under ``root/multisector-<frames>f`` (kept between runs)."""
    from core.synthetic.archive import cube_name, write_sparse_cube

    folder = root / f"multisector-{frames}f"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sector, camera, ccd in REAL:
        path = folder / cube_name(sector, camera, ccd)
        if not path.exists():
            write_sparse_cube(path, sector=sector, camera=camera, ccd=ccd, frames=frames)
        paths.append(path)
    for sector, (src_sector, camera, ccd) in SHARED:
        path = folder / cube_name(sector, camera, ccd)
        if not path.exists():
            tmp = folder / f".{path.name}.tmp"
            write_sparse_cube(tmp, sector=src_sector, camera=camera, ccd=ccd, frames=frames)
            _set_sector(tmp, sector)
            os.replace(tmp, path)
        paths.append(path)
    return sorted(paths)


# ------------------------------------------------------------------------------------------------
# one request through HTTP


def target(sector: int | None) -> str:
    q: dict[str, Any] = {"ra": RA, "dec": DEC, "x": SIDE, "y": SIDE, "units": "px"}
    if sector is not None:
        q["sector"] = sector
    return f"{API}/astrocut?" + urlencode(q)


@dataclass
class Got:
    """One answer: seconds to the last byte, to the first body byte, bytes, members, GETs."""

    total_s: float
    nbytes: int
    members: list[tuple[str, int, int]]
    gets: int = 0


async def _fetch(port: int, path: str) -> tuple[float, int, list[tuple[str, int, int]]]:
    resp, members, problem = await get_zip(port, path)
    if members is None:
        raise RuntimeError(f"{problem} for {path}")
    return resp.total_s, resp.nbytes, [(m.name, m.crc32, m.size) for m in members]


def fetch(srv: CutoutServe, path: str, counter: Any = None) -> Got:
    g0 = counter.snapshot()["GET"] if counter is not None else 0
    total_s, nbytes, members = asyncio.run(_fetch(srv.port, path))
    gets = counter.snapshot()["GET"] - g0 if counter is not None else 0
    return Got(total_s, nbytes, members, gets)


@dataclass
class Figures:
    """What one checkout measured on one storage."""

    who: str
    warm_one: list[Got] = field(default_factory=list)
    warm_all: list[Got] = field(default_factory=list)
    first_all: list[Got] = field(default_factory=list)

    @staticmethod
    def ms(rows: list[Got]) -> float:
        return statistics.median(g.total_s for g in rows) * 1e3 if rows else float("nan")

    @staticmethod
    def gets(rows: list[Got]) -> float:
        return statistics.median(g.gets for g in rows) if rows else float("nan")

    @property
    def members(self) -> list[tuple[str, int, int]]:
        for rows in (self.warm_all, self.first_all):
            if rows:
                return rows[0].members
        return []


def serve(root: Path | None, env: dict[str, str]) -> CutoutServe:
    return CutoutServe({**env, "CUTOUT_LOG_LEVEL": "warning"}, root=root, python=sys.executable)


def measure(checkouts: list[tuple[str, Path | None]], env_of: Any, runs: int, counter: Any = None
            ) -> dict[str, Figures]:
    """Warm medians of one sector and of all sectors, then the first all-sectors request of a
    server just started (its index file kept from the first start), for every checkout, the
    checkouts' servers running side by side and taken in turn (a busy moment of this shared
    machine weighs on all of them alike)."""
    figs = {who: Figures(who) for who, _ in checkouts}
    one, every = target(ONE_SECTOR), target(None)
    servers = [(who, serve(where, env_of(who)).start()) for who, where in checkouts]
    try:
        for _who, srv in servers:
            fetch(srv, one, counter)
            fetch(srv, every, counter)  # every cube opened, every layout cached
        for _ in range(runs):
            for who, srv in servers:
                figs[who].warm_one.append(fetch(srv, one, counter))
            for who, srv in servers:
                figs[who].warm_all.append(fetch(srv, every, counter))
    finally:
        for _who, srv in servers:
            srv.stop()
    for _ in range(runs):  # no cube opened yet
        for who, where in checkouts:
            with serve(where, env_of(who)) as srv:
                figs[who].first_all.append(fetch(srv, every, counter))
    for fig in figs.values():
        for rows in (fig.warm_one, fig.warm_all, fig.first_all):
            if any(g.members != rows[0].members for g in rows):
                raise RuntimeError(f"{fig.who}: repeated answers differ")
    return figs


# ------------------------------------------------------------------------------------------------
# the runs


def local_env(paths: list[Path], work: Path) -> Any:
    def env(who: str) -> dict[str, str]:
        return {"CUTOUT_CUBE_DIRS": str(paths[0].parent), "CUTOUT_WORK_DIR": str(work / f"local-{who}"),
                "CUTOUT_INDEX": str(work / f"local-{who}.sqlite"), "CUTOUT_INDEX_REFRESH_S": "0"}
    return env


def s3_env(s3r: Any, prefix: str, proxy: Any, work: Path) -> Any:
    def env(who: str) -> dict[str, str]:
        return {"CUTOUT_CUBE_DIRS": f"s3://tess/{prefix}", "CUTOUT_WORK_DIR": str(work / f"s3-{who}"),
                "CUTOUT_INDEX": str(work / f"s3-{who}.sqlite"), "CUTOUT_INDEX_WRITER": "true",
                "CUTOUT_INDEX_REFRESH_S": "0", "CUTOUT_S3_ENDPOINT_URL": proxy.url,
                "CUTOUT_S3_ACCESS_KEY_ID": s3r.ACCESS_KEY, "CUTOUT_S3_SECRET_ACCESS_KEY": s3r.SECRET_KEY,
                "CUTOUT_S3_ANONYMOUS": "false", "CUTOUT_S3_REGION": "us-east-1"}
    return env


def read_floor(uris: list[str], cfg: Any, runs: int, server_pid: int | None = None
               ) -> tuple[float, float, int, float, float]:
    """Median ms to read one cut's row ranges, and all 12 cuts' at once (``core.storage.sources``,
    bytes only, in this process through the same proxy), the GETs of all 12, and the median CPU
    ms the S3 server (``server_pid``'s process tree) and this process (the client: boto3) spent
    on all 12: the floor of a cut is one round trip plus the transfer of its rows, when all of
    them are in flight at once, and no client makes the server answer faster than its own CPU
    allows."""
    from concurrent.futures import ThreadPoolExecutor

    from core.cubes.cache import open_cube
    from core.storage.sources import open_source
    from core.tpf.cut import locate

    jobs = []
    for uri in uris:
        cube = open_cube(uri, s3=cfg)
        ins = locate(cube, f"{RA} {DEC}", SIDE).inside
        jobs.append((open_source(uri, s3=cfg), cube.ranges(ins.y0, ins.y1, ins.x0, ins.x1), cube.sector))
    one = [j for j in jobs if j[2] == ONE_SECTOR]

    def read(sel: list[Any]) -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(sel)) as pool:
            list(pool.map(lambda j: j[0].read_ranges(j[1]), sel))
        return (time.perf_counter() - t0) * 1e3

    read(jobs)  # warm: connections open
    ones, alls, server_ms, client_ms = [], [], [], []
    for _ in range(runs):
        ones.append(read(one))
        cpu0, own0 = (tree_cpu_s(server_pid) if server_pid else 0.0), time.process_time()
        alls.append(read(jobs))
        client_ms.append((time.process_time() - own0) * 1e3)
        server_ms.append(((tree_cpu_s(server_pid) if server_pid else 0.0) - cpu0) * 1e3)
    for j in jobs:
        j[0].close()
    return (statistics.median(ones), statistics.median(alls), sum(len(j[1]) for j in jobs),
            statistics.median(server_ms), statistics.median(client_ms))


def transfer_floor(sizes: list[int], runs: int) -> float:
    """Median ms of a zip of members of ``sizes`` streamed from memory by a bare FastAPI app on the
    same uvicorn, to the same client (``bench/_server.py`` ``zipfloor``): what sending the bytes
    costs on this machine, with no cutting."""
    from _server import ServerProcess

    with ServerProcess("zipfloor", {"ZIPFLOOR_SIZES": ",".join(map(str, sizes))}) as srv:
        fetch(srv, target(None))  # type: ignore[arg-type]
        return statistics.median(fetch(srv, target(None)).total_s for _ in range(runs)) * 1e3  # type: ignore[arg-type]


def astrocut_loop(uris: list[str], runs: int) -> tuple[float, list[tuple[int, int, int]]]:
    """Median ms of astrocut 1.4.0's 30x30 ``cube_cut(threads=8)`` over every cube, one after
    another (as a user loops over sectors), and the FLUX shapes."""
    from astrocut import CutoutFactory as AstrocutFactory

    times, shapes = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        shapes = []
        for uri in uris:
            hdul = AstrocutFactory().cube_cut(uri, f"{RA} {DEC}", SIDE, memory_only=True, threads=8)
            shapes.append(hdul[1].data["FLUX"].shape)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, shapes


def table(title: str, figs: list[Figures], anchor_ms: float | None, s3: bool) -> None:
    print(f"\n{title}")
    print(f"  {'':10} {'one sector':>11} {'all 12, warm':>13} {'x one':>7} {'all 12, first':>14} {'x one':>7}"
          + ("  GETs one/all/first" if s3 else ""))
    for f in figs:
        one, every, first = f.ms(f.warm_one), f.ms(f.warm_all), f.ms(f.first_all)
        line = (f"  {f.who:10} {one:9.1f}ms {every:11.1f}ms {every / one:6.1f}x {first:12.1f}ms "
                f"{first / one:6.1f}x")
        if s3:
            line += f"  {f.gets(f.warm_one):.0f}/{f.gets(f.warm_all):.0f}/{f.gets(f.first_all):.0f}"
        print(line)
    if anchor_ms is not None:
        print(f"  {'astrocut 1.4.0 cube_cut threads=8, looping over the 12 cubes':58} {anchor_ms:9.1f}ms")


def verdict(name: str, value: float, limit: float, unit: str = "x", at_least: bool = False) -> str:
    ok = value >= limit if at_least else value <= limit
    sign = ">=" if at_least else "<="
    return f"  {name}: {value:.2f}{unit} (target {sign} {limit:g}{unit}): {'met' if ok else 'NOT met'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small cubes, few runs")
    ap.add_argument("--prev-root", type=Path, default=None, help="another checkout to measure beside this one")
    ap.add_argument("--frames", type=int, default=1300, help="frames per cube (default 1300: a 30-min sector)")
    ap.add_argument("--runs", type=int, default=5, help="warm repeats and restarts per figure (median)")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="added to every S3 request (default 50)")
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--no-astrocut", action="store_true")
    args = ap.parse_args(argv)
    frames, runs, delay = args.frames, args.runs, args.delay_ms
    if args.quick:
        frames, runs, delay = 120, 2, 5.0
    root = Path(tempfile.mkdtemp(prefix="bench-ms-")) if args.quick else DATA
    work = Path(tempfile.mkdtemp(prefix="bench-ms-work-"))
    checkouts: list[tuple[str, Path | None]] = [("ours", None)]
    if args.prev_root is not None:
        checkouts.append(("prev", args.prev_root.resolve()))
    paths = build_cubes(root, frames)
    print(f"bench_multisector: {SIDE}x{SIDE} px at RA {RA} Dec {DEC}, {len(paths)} sparse 2078x2136 px x {frames}-"
          f"frame cubes; one sector = sector {ONE_SECTOR}; {os.cpu_count()} cores; runs {runs}", flush=True)
    failures: list[str] = []
    results: dict[tuple[str, str], Figures] = {}
    try:
        if not args.no_local:
            for who, fig in measure(checkouts, local_env(paths, work), runs).items():
                results[("local", who)] = fig
            anchor = None
            if not args.no_astrocut:
                anchor, _ = astrocut_loop([str(p) for p in paths], max(1, min(runs, 2)))
            table("local disk (HTTP, whole zip received)", [results[("local", w)] for w, _ in checkouts], anchor,
                  False)
            sizes = [size for _name, _crc, size in results[("local", "ours")].members]
            pipe = transfer_floor(sizes, runs)
            print(f"  {'floor: the same zip streamed from memory by a bare FastAPI app (no cut)':58} {pipe:9.1f}ms")
        if not args.no_s3:
            s3_part(args, checkouts, paths, work, runs, delay, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.quick:
            shutil.rmtree(root, ignore_errors=True)
    for storage in ("local", "s3"):
        if (storage, "prev") in results and (storage, "ours") in results:
            a, b = results[(storage, "ours")].members, results[(storage, "prev")].members
            same = [(n, c, s) for n, c, s in a] == [(n, c, s) for n, c, s in b]
            print(f"\n{storage}: members of ours and prev {'byte-identical' if same else 'DIFFER'} "
                  f"({len(a)} members, names, CRC-32 and sizes compared)")
            if not same:
                failures.append(f"{storage}: members differ")
    print("\ntargets")
    if ("s3", "ours") in results:
        f = results[("s3", "ours")]
        one = f.ms(f.warm_one)
        print(verdict("S3 warm all sectors / warm one sector", f.ms(f.warm_all) / one, 2.0))
        print(verdict("S3 first all sectors / warm one sector", f.ms(f.first_all) / one, 4.0))
    if ("local", "ours") in results and ("local", "prev") in results:
        o, p = results[("local", "ours")], results[("local", "prev")]
        print(verdict("local all sectors, prev / ours", p.ms(p.warm_all) / o.ms(o.warm_all), 1.5, at_least=True))
    if args.quick:
        print("  (--quick: small cubes on a busy CI machine; figures printed, not judged)")
    for text in failures:
        print("FAILED:", text)
    return 1 if failures else 0


def s3_part(args: argparse.Namespace, checkouts: list[tuple[str, Path | None]], paths: list[Path], work: Path,
            runs: int, delay: float, results: dict[tuple[str, str], Figures]) -> None:
    """The S3 runs: s3rver behind the counting latency proxy."""
    from bench_archive import CountingLatencyProxy, place

    from tests.s3rver import S3rverServer, S3rverUnavailable

    try:
        s3r = S3rverServer(parent_dir=work).start()
    except (S3rverUnavailable, RuntimeError) as exc:
        print(f"\nS3 skipped: {exc}")
        return
    try:
        prefix = f"multisector-{paths[0].parent.name}"
        uris = place(s3r, paths, prefix)
        with CountingLatencyProxy("127.0.0.1", s3r.port, delay_s=delay / 1e3) as proxy:
            for who, fig in measure(checkouts, s3_env(s3r, prefix, proxy, work), runs, proxy).items():
                results[("s3", who)] = fig
            cfg = s3r.with_config(endpoint_url=proxy.url, max_connections=64, read_timeout_s=60)
            floor_one, floor_all, floor_gets, server_ms, client_ms = read_floor(uris, cfg, runs, s3r.proc.pid)
            anchor = None
            if not args.no_astrocut:
                astrocut_s3_env(proxy.url, s3r.ACCESS_KEY, s3r.SECRET_KEY)
                try:
                    anchor, _ = astrocut_loop(uris, 1)
                except Exception as exc:  # noqa: BLE001 - reported; the rest stands
                    print(f"  astrocut 1.4.0 could not cut from s3rver: {type(exc).__name__}: {str(exc)[:300]}")
        table(f"S3 (s3rver, +{delay:g} ms per request; HTTP, whole zip received)",
              [results[("s3", w)] for w, _ in checkouts], anchor, True)
        print(f"  {'floor: the row ranges alone, all in flight at once (bytes only, in-process)':76} one cut "
              f"{floor_one:.1f} ms, all 12 {floor_all:.1f} ms ({floor_gets} GETs): {floor_all / floor_one:.1f}x")
        one_warm = min(Figures.ms(results[("s3", w)].warm_one) for w, _ in checkouts)
        print(f"  {'the S3 server CPU answering those GETs (s3rver is one node process)':76} {server_ms:.0f} ms "
              f"({server_ms / max(floor_gets, 1):.2f} ms a GET): alone {server_ms / one_warm:.1f}x a warm one-sector "
              f"request ({one_warm:.0f} ms)")
        print(f"  {'the client CPU asking them (this process)':76} {client_ms:.0f} ms "
              f"({client_ms / max(floor_gets, 1):.2f} ms a GET); {os.cpu_count()} cores for both")
    finally:
        s3r.stop()


if __name__ == "__main__":
    raise SystemExit(main())
