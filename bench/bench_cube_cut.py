"""Benchmark cube cuts: ours (core.tpf.cut) vs astrocut 1.4.0 vs the raw pread floor.

Usage: bench/bench_cube_cut.py [--quick] [--frames 100] [--cube PATH] [--runs N] [--profile]

Builds (once, under /tmp/bench-data) a full-size 2078 x 2136 synthetic SPOC cube of ``--frames``
frames unless ``--cube`` is given, warms the page cache and both libraries, then for 5x5, 30x30 and
100x100 cutouts prints the median of N runs (the sub-millisecond figures: of at least 0.5 s of
calls, 0.05 s with --quick) of:

- pread floor:       os.pread of the cutout's row ranges, nothing else
- ours, bytes:       locate + cut_bytes (the service's path: the TPF's FITS bytes, no HDUList),
                     the same cut repeated (its window's WCS fit comes from the per-cube cache)
- ours, bytes new:   the same, each call at a new position (a new window: the fit is computed,
                     and the rows read are not in the CPU caches; they are in the page cache)
- ours, memory:      CutoutFactory().cube_cut(..., memory_only=True) (an HDUList read lazily)
- ours, mem+data:    the same, then reading hdul[1].data["FLUX"] (astropy parses the table)
- ours, file:        cube_cut(..., output_path=tmp)
- write floor:       writing a file of the TPF's size to a temporary name and renaming it
- astrocut, memory / file: astrocut 1.4.0's CutoutFactory().cube_cut

Ratios: ac/ours for memory and file; mem/floor, bytes/floor and new/floor against the pread floor.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.simplefilter("ignore")

from _timing import median_ms

from core.cubes.cache import open_cube
from core.tpf.cut import CutoutFactory, cut_bytes, locate

DATA = Path(os.environ.get("BENCH_DATA", "/tmp/bench-data"))


def full_cube(frames: int = 100, verbose: bool = True) -> Path:
    """A full-size (2078 x 2136) SPOC cube of ``frames`` synthetic FFIs, built once and reused.

    Built with our CubeFactory when it works, else astrocut 1.4.0's; the FFIs are deleted after.
    """
    out = DATA / f"full-{frames}" / "tess-s0038-2-2-cube.fits"
    if out.exists():
        return out
    from core.synthetic.ffis import write_sector

    ffi_dir = DATA / f"ffis-{frames}"
    t0 = time.perf_counter()
    sector = write_sector(ffi_dir, size="full", frames=frames, seed=0)
    if verbose:
        print(f"wrote {frames} synthetic FFIs in {time.perf_counter() - t0:.1f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    t0 = time.perf_counter()
    files = [str(f) for f in sector.ffi_files]
    try:
        from core.building.factory import CubeFactory

        CubeFactory().make_cube(files, str(tmp), verbose=False)
        how = "ours"
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to astrocut's
        print(f"our CubeFactory failed ({exc!r}); using astrocut's")
        from astrocut import CubeFactory as AstrocutCubeFactory

        AstrocutCubeFactory().make_cube(files, str(tmp), verbose=False)
        how = "astrocut"
    os.replace(tmp, out)
    if verbose:
        print(f"built {out} ({how} CubeFactory) in {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(ffi_dir, ignore_errors=True)
    return out



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--cube", type=str, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="cProfile ours (memory) for each size")
    args = ap.parse_args()
    runs = args.runs or (5 if args.quick else 20)

    from astrocut import CutoutFactory as AstrocutFactory

    path = Path(args.cube) if args.cube else full_cube(args.frames)
    cube = open_cube(path)
    print(
        f"cube: {path} {cube.ny}x{cube.nx} px x {cube.nframes} frames x {cube.nplanes} planes, "
        f"{os.path.getsize(path) / 1e9:.2f} GB; runs per figure: {runs}"
    )
    # A position in the middle of the science pixels.
    ra, dec = cube.wcs.all_pix2world(min(1068.3, cube.nx / 2), min(1024.6, cube.ny / 2), 0)
    coord = f"{float(ra)} {float(dec)}"
    out_dir = tempfile.mkdtemp(prefix="bench-cut-")
    ours = CutoutFactory()
    theirs = AstrocutFactory()

    fd = os.open(path, os.O_RDONLY)
    rows = []
    for size in (5, 30, 100):
        geo = locate(cube, coord, size)
        ranges = cube.ranges(geo.inside.y0, geo.inside.y1, geo.inside.x0, geo.inside.x1)

        def floor(ranges=ranges):
            for off, n in ranges:
                os.pread(fd, n, off)

        def ours_mem(size=size):
            ours.cube_cut(path, coord, size, memory_only=True)

        def ours_mem_data(size=size):
            ours.cube_cut(path, coord, size, memory_only=True)[1].data["FLUX"]

        def ours_bytes(size=size):
            cut_bytes(cube, locate(cube, coord, size))

        # New positions: a spiral of whole-pixel steps around the centre, one per call.
        x0, y0 = min(1068.3, cube.nx / 2), min(1024.6, cube.ny / 2)
        steps = [(x0 + 3 * (i % 41) - 60, y0 + 3 * (i // 41) - 60) for i in range(41 * 41)]
        ras, decs = cube.wcs.all_pix2world(*np.array(steps * 4).T, 0)
        news = iter([f"{float(r)} {float(d)}" for r, d in zip(ras, decs)])

        def ours_bytes_new(size=size, news=news):
            cut_bytes(cube, locate(cube, next(news), size))

        nbytes = len(cut_bytes(cube, locate(cube, coord, size)).data)
        blob = bytes(nbytes)

        def write_floor(blob=blob):
            tmp = os.path.join(out_dir, "floor.part")
            with open(tmp, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, os.path.join(out_dir, "floor.fits"))

        def ours_file(size=size):
            ours.cube_cut(path, coord, size, output_path=out_dir)

        def ac_mem(size=size):
            theirs.cube_cut(str(path), coord, size, memory_only=True)

        def ac_file(size=size):
            theirs.cube_cut(str(path), coord, size, output_path=out_dir)

        for fn in (floor, ours_mem, ours_mem_data, ours_bytes, ours_file, write_floor, ac_mem, ac_file):
            fn()  # warm-up: page cache, imports, cube cache
        # The new windows read rows no other figure touched: bring the band they span into the page
        # cache, as the floor's rows are ("warm cache" for every figure).
        band = (max(0, int(y0) - 70), min(cube.ny, int(y0) + 70 + size))
        for off, n in cube.ranges(band[0], band[1], 0, cube.nx):
            os.pread(fd, n, off)
        # Fast figures: at least `secs` of calls each (thousands of samples), for stable medians.
        secs = 0.05 if args.quick else 0.5
        r = {
            "size": size,
            "floor": median_ms(floor, runs, min_seconds=secs),
            "ours_bytes": median_ms(ours_bytes, runs, min_seconds=secs),
            "ours_bytes_new": median_ms(ours_bytes_new, runs, min_seconds=secs, max_runs=len(steps) - 1),
            "ours_mem": median_ms(ours_mem, runs, min_seconds=secs),
            "ours_mem_data": median_ms(ours_mem_data, runs),
            "ours_file": median_ms(ours_file, runs),
            "write_floor": median_ms(write_floor, runs),
            "ac_mem": median_ms(ac_mem, max(3, runs // 2)),
            "ac_file": median_ms(ac_file, max(3, runs // 2)),
        }
        rows.append(r)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(runs):
                ours_mem()
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(8)
            print(f"--- profile, ours memory {size}x{size} ({runs} runs), by own time ---")
            print("\n".join(s.getvalue().splitlines()[6:22]))
    os.close(fd)

    print()
    print("median ms")
    head = (
        f"{'size':>8} {'floor':>6} {'bytes':>6} {'new':>6} {'mem':>6} {'+data':>6} {'file':>6} "
        f"{'wfloor':>6} {'ac mem':>7} {'ac file':>7} {'ac/mem':>7} {'ac/file':>7} {'mem/fl':>7} {'bytes/fl':>8} {'new/fl':>7}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['size']:>3}x{r['size']:<4} {r['floor']:6.3f} {r['ours_bytes']:6.2f} {r['ours_bytes_new']:6.2f} "
            f"{r['ours_mem']:6.2f} {r['ours_mem_data']:6.1f} {r['ours_file']:6.2f} {r['write_floor']:6.2f} "
            f"{r['ac_mem']:7.1f} {r['ac_file']:7.1f} {r['ac_mem'] / r['ours_mem']:6.1f}x "
            f"{r['ac_file'] / r['ours_file']:6.1f}x {r['ours_mem'] / r['floor']:6.1f}x {r['ours_bytes'] / r['floor']:7.1f}x "
            f"{r['ours_bytes_new'] / r['floor']:6.1f}x"
        )
    print(
        "floor: pread of the cutout's rows; bytes: our TPF bytes, same cut repeated; new: a new "
        "window each call (its rows in the page cache); mem: cube_cut(memory_only=True), a lazily "
        "read HDUList (+data: then astropy parsing headers and table); wfloor: writing a file of "
        "the TPF's size; ac: astrocut 1.4.0. Sub-ms figures: medians of >= 0.5 s of calls."
    )


if __name__ == "__main__":
    main()
