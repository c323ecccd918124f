"""Benchmark a 30x30 cut from a cube of a real sector's size: ours vs astrocut 1.4.0.

Usage: bench/bench_scale.py [--quick] [--runs N]

A real SPOC sector cube is 2078 x 2136 px x ~3705 frames x 2 planes (~132 GB). We build it cheaply
as a SPARSE file: real headers (from a one-frame synthetic cube built by our CubeFactory) and a
3705-row table, with the data region a hole (``truncate``), so reads return zeros without disk I/O.
A 100-frame sparse cube is built the same way for comparison. For each we time a 30x30 cut (median
of N) for ours (first cut, i.e. parsing, and warm) and astrocut, and the raw pread floor.
Shows that our per-cut cost follows the bytes read (frames) while astrocut also pays for parsing
the whole table on every cut.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")

import numpy as np
from _timing import median_ms
from astropy.io import fits
from astropy.table import Table
from bench_cube_cut import DATA

from core.cubes import cache as cube_mod
from core.tpf.cut import CutoutFactory, locate

NY, NX = 2078, 2136


def one_frame_cube() -> Path:
    out = DATA / "scale-src" / "tess-s0038-2-2-cube.fits"
    if out.exists():
        return out
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    sector = write_sector(DATA / "scale-src" / "ffi", size="full", frames=1, seed=3)
    CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(out), verbose=False)
    for f in sector.ffi_files:
        os.unlink(f)
    return out


def sparse_cube(frames: int) -> Path:
    """A full-size cube of ``frames`` frames whose data region is a hole."""
    out = DATA / f"sparse-{frames}" / "tess-s0038-2-2-cube.fits"
    if out.exists():
        return out
    src = one_frame_cube()
    with fits.open(src) as hdul:
        primary = hdul[0].header.copy()
        table = Table(hdul[2].data)
    rows = table[np.zeros(frames, dtype=int)]
    step = float(table["TSTOP"][0] - table["TSTART"][0])
    rows["TSTART"] = table["TSTART"][0] + step * np.arange(frames)
    rows["TSTOP"] = rows["TSTART"] + step
    rows["FFI_FILE"] = [f"tess-s0038-2-2-{i:05d}-s_ffic.fits" for i in range(frames)]
    primary["TSTOP"] = float(rows["TSTOP"][-1])
    image = fits.Header(
        [
            ("XTENSION", "IMAGE"),
            ("BITPIX", -32),
            ("NAXIS", 4),
            ("NAXIS1", 2),
            ("NAXIS2", frames),
            ("NAXIS3", NX),
            ("NAXIS4", NY),
            ("PCOUNT", 0),
            ("GCOUNT", 1),
        ]
    )
    nbytes = NY * NX * frames * 2 * 4
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(fits.PrimaryHDU(header=primary).header.tostring().encode())
        fh.write(image.tostring().encode())
        start = fh.tell()
        fh.truncate(start + nbytes + (-nbytes % 2880))  # the hole
        fh.seek(0, os.SEEK_END)
        table_hdu = fits.BinTableHDU(rows)
        import io

        buf = io.BytesIO()
        table_hdu.writeto(buf)  # writes a dummy primary first: skip it
        raw = buf.getvalue()
        fh.write(raw[2880:])
    os.replace(tmp, out)
    return out



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 9)
    from astrocut import CutoutFactory as AstrocutFactory

    out_dir = tempfile.mkdtemp(prefix="bench-scale-")
    print(
        f"{'cube':>28} {'GB':>7} {'floor':>7} {'ours 1st':>9} {'ours':>7} {'astrocut':>9} {'ac/ours':>8} "
        f"{'ours/floor':>10}"
    )
    for frames in (100, 3705):
        path = sparse_cube(frames)
        cube_mod.clear_cache()
        # where: the middle of the science pixels, via the cube's own WCS (parsed once here)
        t0 = time.perf_counter()
        cube = cube_mod.open_cube(path)
        first = time.perf_counter() - t0
        ra, dec = cube.wcs.all_pix2world(1068.3, 1024.6, 0)
        coord = f"{float(ra)} {float(dec)}"
        geo = locate(cube, coord, 30)
        ranges = cube.ranges(geo.inside.y0, geo.inside.y1, geo.inside.x0, geo.inside.x1)
        fd = os.open(path, os.O_RDONLY)

        def floor(ranges=ranges, fd=fd):
            for off, n in ranges:
                os.pread(fd, n, off)

        cube_mod.clear_cache()
        t0 = time.perf_counter()
        CutoutFactory().cube_cut(path, coord, 30, memory_only=True)
        first = (time.perf_counter() - t0) * 1e3
        ours = median_ms(
            lambda path=path, coord=coord: CutoutFactory().cube_cut(path, coord, 30, memory_only=True), runs
        )
        floor()
        fl = median_ms(floor, runs)
        ac = median_ms(
            lambda path=path, coord=coord: AstrocutFactory().cube_cut(str(path), coord, 30, memory_only=True),
            max(2, runs // 3),
        )
        os.close(fd)
        gb = NY * NX * frames * 8 / 1e9
        label = f"{NY}x{NX}x{frames} (sparse)"
        print(
            f"{label:>28} {gb:7.1f} {fl:7.2f} {first:9.1f} {ours:7.2f} {ac:9.1f} {ac / ours:7.1f}x "
            f"{ours / fl:9.1f}x"
        )
    print(
        "ms, medians; 'ours 1st' includes parsing headers and table (then cached); floor = os.pread of the "
        "same 30 row ranges. Output dir:",
        out_dir,
    )


if __name__ == "__main__":
    main()
