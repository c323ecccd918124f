"""Where a small in-memory cut's time goes, against its pread floor (where a 5x5 cut's microseconds go).

Usage: bench/bench_cut_anatomy.py [--quick] [--size 5] [--cube PATH]

On the full-size 100-frame cube of bench_cube_cut.py (built once under /tmp/bench-data), one
``--size`` cut repeated, best of 5 batches of timeit (the sub-ms figures need thousands of calls):

- pread floor:          os.pread of the cutout's rows on an open descriptor, nothing else
- ours:                 CutoutFactory().cube_cut(..., memory_only=True)
- stripped, pread:      the same bytes from the same caches with every check and layer removed:
                        one stat, the cached layout and fit, preadv per row, one transposing copy,
                        the HDUList (what a pure-Python cut cannot go below)
- stripped, mmap:       the same with the rows copied from an mmap of the cube (no syscalls; NOT
                        used by the engine: a cube truncated in place would kill it with SIGBUS)
- the engine's pieces, each timed alone: open_cube (a cache hit), locate, cut_bytes, the HDUList
- astrocut 1.4.0:       its cube_cut(memory_only=True)

Pieces timed alone sum to less than the whole: in sequence, the file-system calls and the TPF
buffer evict the interpreter's caches.
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import timeit
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.simplefilter("ignore")

from bench_cube_cut import full_cube

from core.cubes.cache import open_cube
from core.fitsio.cards import format_value
from core.tpf import layout as tpf_layout
from core.tpf.cut import CutoutFactory, TpfHDUList, cut_bytes, locate


def best_us(fn, number: int, repeat: int = 5) -> float:
    """Best per-call time in microseconds of ``repeat`` batches of ``number`` calls."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls")
    ap.add_argument("--size", type=int, default=5)
    ap.add_argument("--cube", type=str, default=None)
    args = ap.parse_args()
    number = 500 if args.quick else 10_000
    size = args.size

    from astrocut import CutoutFactory as AstrocutFactory

    path = str(args.cube or full_cube(100))
    cube = open_cube(path)
    ra, dec = cube.wcs.all_pix2world(min(1068.3, cube.nx / 2), min(1024.6, cube.ny / 2), 0)
    coord = f"{float(ra)} {float(dec)}"
    geo = locate(cube, coord, size)
    win = geo.window
    reference = bytes(cut_bytes(cube, geo).data)
    fd = os.open(path, os.O_RDONLY)
    ranges = cube.ranges(win.y0, win.y1, win.x0, win.x1)
    lay = tpf_layout.layout(cube, size, size)
    if tpf_layout.prototype(cube, lay) is None or geo.inside != win:
        raise SystemExit("the stripped sequences need a small cut fully on the cube")
    per_px = cube.nframes * cube.nplanes * 4
    row = cube.nx * per_px
    first = cube.data_offset + win.y0 * row + win.x0 * per_px
    n = size * per_px
    mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    mapped = np.ndarray((cube.ny, cube.nx, cube.nframes, cube.nplanes), ">f4", mm, cube.data_offset)

    def floor() -> None:
        for off, length in ranges:
            os.pread(fd, length, off)

    factory = CutoutFactory()

    def ours() -> None:
        factory.cube_cut(path, coord, size, memory_only=True)

    def stripped(use_mmap: bool) -> TpfHDUList:
        c = open_cube(path)  # a cache hit: one stat
        parts = coord.split()
        r, d = float(parts[0]) % 360.0, float(parts[1])
        c.radec_to_pixel(r, d)
        layout = tpf_layout.layout(c, size, size)
        values = c.memo.get("tpf-fit", (size, size, win.x0, win.y0))[1]
        buf = tpf_layout.prototype(c, layout).copy()
        buf[layout.slot_index] = values
        buf[layout.radec_index] = np.frombuffer(
            format_value(r).encode() * layout.radec_counts[0] + format_value(d).encode() * layout.radec_counts[1],
            np.uint8,
        )
        dst = np.ndarray(
            (layout.nrows, 2, size, size), ">f4", buf, layout.flux_offset,
            (layout.dtype.itemsize, size * size * 4, size * 4, 4),
        )
        if use_mmap:
            dst[...] = mapped[win.y0 : win.y1, win.x0 : win.x1].transpose(2, 3, 0, 1)
        else:
            block = np.empty((size, size, c.nframes, c.nplanes), ">f4")
            view = memoryview(block).cast("B")
            for i in range(size):
                os.preadv(fd, [view[i * n : (i + 1) * n]], first + i * row)
            dst[...] = block.transpose(2, 3, 0, 1)
        return TpfHDUList.from_bytes(buf)

    for use_mmap in (False, True):
        if bytes(stripped(use_mmap).raw) != reference:
            raise SystemExit("a stripped sequence built different bytes")
    result = cut_bytes(cube, geo).data
    theirs = AstrocutFactory()
    figures = [
        ("pread floor", best_us(floor, number)),
        ("ours: cube_cut(memory_only=True)", best_us(ours, number)),
        ("stripped, pread", best_us(lambda: stripped(False), number)),
        ("stripped, mmap (not used)", best_us(lambda: stripped(True), number)),
        ("piece alone: open_cube (hit)", best_us(lambda: open_cube(path), number)),
        ("piece alone: locate", best_us(lambda: locate(cube, coord, size), number)),
        ("piece alone: cut_bytes", best_us(lambda: cut_bytes(cube, geo), number)),
        ("piece alone: the HDUList", best_us(lambda: TpfHDUList.from_bytes(result), number)),
        ("astrocut 1.4.0: cube_cut(memory_only=True)",
         best_us(lambda: theirs.cube_cut(path, coord, size, memory_only=True), 1, 3 if args.quick else 9)),
    ]
    mm.close()
    os.close(fd)
    base = figures[0][1]
    print(f"{size}x{size} cut of {path} ({cube.ny}x{cube.nx} px x {cube.nframes} frames), best of 5 x {number} calls")
    for name, us in figures:
        print(f"{name:45s} {us:10.1f} us {us / base:8.1f}x the floor")


if __name__ == "__main__":
    main()
