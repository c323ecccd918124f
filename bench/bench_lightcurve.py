"""Benchmark a simple-aperture light curve from a cube of a real sector's size: ours vs astrocut +
lightkurve.

Usage: bench/bench_lightcurve.py [--quick] [--runs N]

The cubes are bench_scale's sparse full-size cubes (2078 x 2136 px, real headers and table, the data
region a hole: reads return zeros without disk I/O, as from a warm page cache). For apertures of
3x3 and 11x11 pixels at the middle of the science pixels it times

- ours: :func:`core.cubes.lightcurve.aperture_lightcurve` (reads only the aperture's pixels), and the
  planner's whole JSON answer (:func:`app.planning.lightcurve.plan_lightcurve`);
- astrocut 1.4.0's ``cube_cut`` of the aperture (in memory) then lightkurve's
  ``to_lightcurve(aperture_mask="all")``, the way a client gets the same numbers today;
- our own TPF (``CutoutFactory.cube_cut``) then lightkurve, to separate the two costs;

and the peak of Python allocations while ours runs (tracemalloc), against the aperture's bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")

from _timing import median_ms
from bench_scale import sparse_cube

from core.cubes import cache as cube_mod
from core.cubes.lightcurve import aperture_lightcurve, square_mask
from core.tpf.cut import CutoutFactory


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _row(path: Path, ctx, side: int, runs: int) -> tuple[float, float, float, float, float]:
    """(ours, ours JSON, astrocut + lightkurve, our TPF + lightkurve) ms and ours' peak MB."""
    import lightkurve as lk
    from astrocut import CutoutFactory as AstrocutFactory

    from app.params.requests import LightCurveParams
    from app.planning.lightcurve import plan_lightcurve

    cube = cube_mod.open_cube(path)
    ra, dec = (float(v) for v in cube.wcs.all_pix2world(1068.3, 1024.6, 0))  # mid science pixels
    coord = f"{ra} {dec}"
    mask = square_mask(side)
    aperture_lightcurve(cube, ra, dec, mask)  # the per-frame columns are read once per cube

    def ours():
        return aperture_lightcurve(cube, ra, dec, mask)

    def ours_json():
        return plan_lightcurve(ctx, LightCurveParams(ra=ra, dec=dec, aperture=side)).data

    def astrocut_lk():
        hdul = AstrocutFactory().cube_cut(str(path), coord, side, memory_only=True)
        return lk.TessTargetPixelFile(hdul, quality_bitmask="none").to_lightcurve(aperture_mask="all")

    def ours_tpf_lk():
        hdul = CutoutFactory().cube_cut(path, coord, side, memory_only=True)
        return lk.TessTargetPixelFile(hdul, quality_bitmask="none").to_lightcurve(aperture_mask="all")

    return (median_ms(ours, runs, warm=True), median_ms(ours_json, runs, warm=True),
            median_ms(astrocut_lk, max(2, runs // 3)), median_ms(ours_tpf_lk, max(2, runs // 3), warm=True),
            _peak(ours) / 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 15)
    from app.planning.context import Context
    from core.catalog.configured import open_catalog
    from core.cutout_size import Limits

    work = Path(tempfile.mkdtemp(prefix="bench-lightcurve-"))
    print(f"{'cube':>26} {'aperture':>8} {'ours':>8} {'ours JSON':>10} {'astrocut+lk':>12} {'ours TPF+lk':>12} "
          f"{'ac/ours':>8} {'peak MB':>8} {'pixels MB':>9}")
    for frames in ((3705,) if args.quick else (3705, 12000)):
        path = sparse_cube(frames)
        cube_mod.clear_cache()
        ctx = Context(catalog=open_catalog(cube_dirs=[str(Path(path).parent)]), limits=Limits(),
                      inline_tpf_bytes=96 << 20, band_bytes=32 << 20, work_dir=work)
        for side in (3, 11):
            t_ours, t_json, t_ac, t_tpf, peak = _row(path, ctx, side, runs)
            pixels = side * side * frames * 8 / 1e6
            label = f"2078x2136x{frames} (sparse)"
            print(f"{label:>26} {side:>6}x{side} {t_ours:8.2f} {t_json:10.2f} {t_ac:12.1f} {t_tpf:12.1f} "
                  f"{t_ac / t_ours:7.0f}x {peak:8.2f} {pixels:9.2f}")
    print("ms, medians of", runs, "runs (astrocut: a third as many); peak MB = tracemalloc peak of 'ours';",
          "pixels MB = the aperture's flux and error bytes over all frames. Output dir:", work)


if __name__ == "__main__":
    main()
