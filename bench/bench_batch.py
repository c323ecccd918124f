"""Benchmark batch cutouts: core.batch.cutouts on Dask (1 and 2 workers) vs a plain loop over astrocut 1.4.0.

Usage: bench/bench_batch.py [--quick] [--targets 1000] [--anchor 50] [--image 256x256] [--frames 100]
                            [--cut 10] [--workers 1,2] [--keep]

Writes one synthetic SPOC sector (``--image`` ROWSxCOLS pixels, ``--frames`` FFIs) and its cube
under a temporary directory, and spreads ``--targets`` targets uniformly over the cube (one
output folder each). Then:

- ours, N workers:  ``run_batch`` on the LocalCluster ``core.batch.cluster.dask_client`` makes (N worker
                    processes, one thread each), started and warmed beforehand (a small batch imports the engine on every
                    worker and opens the cube there): the run from planning to the last
                    manifest write, targets per second;
- ours, cold:       the same batch with ``run_batch`` making its own cluster of the largest N
                    (start-up and worker imports included);
- ours, rerun:      the batch again over its finished output (every pair skipped through the
                    manifest: what resuming a finished batch costs);
- ours, loop:       ``core.tpf.cut.CutoutFactory().cube_cut`` in a plain loop over ``--anchor`` targets;
- astrocut loop:    astrocut 1.4.0's ``CutoutFactory().cube_cut`` in a plain loop over the same
                    targets (the anchor: what a script does without a batch runner).

Every cut writes its file. The machine is shared: figures are noisy; ratios within one run are
the meaningful part. ``--quick`` (CI smoke test): a 64x64 cube of 5 frames, 40 targets, 10 anchor
targets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.simplefilter("ignore")


def _image(text: str) -> tuple[int, int]:
    ny, nx = (int(v) for v in text.lower().split("x"))
    return ny, nx


def _make_cube(root: Path, image: tuple[int, int], frames: int) -> Path:
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

    t0 = time.perf_counter()
    sector = write_sector(root / "ffis", sector=38, camera=2, ccd=2, frames=frames, size=image,
                          center=(DEMO_RA, DEMO_DEC), seed=7)
    cube = root / "tess-s0038-2-2-cube.fits"
    CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(cube), verbose=False)
    shutil.rmtree(root / "ffis", ignore_errors=True)
    print(f"cube: {image[0]}x{image[1]} px x {frames} frames, {cube.stat().st_size / 1e6:.1f} MB "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    return cube


class OneCube:
    """The catalog protocol of core.batch.cutouts over one cube file."""

    def __init__(self, path: Path) -> None:
        from core.cubes.cache import open_cube

        self.path = str(path)
        self.cube = open_cube(self.path)

    def containing(self, ra, dec, radius_deg=0.0, *, product="SPOC", sectors=None):
        from types import SimpleNamespace

        c = self.cube
        if product != c.product or (sectors is not None and c.sector not in set(sectors)):
            return []
        if not c.contains_radec(ra, dec, radius_deg):
            return []
        return [SimpleNamespace(uri=self.path, product=c.product, sector=c.sector, camera=c.camera, ccd=c.ccd,
                                nframes=c.nframes, nx=c.nx, ny=c.ny,
                                sector_name=f"tess-s{c.sector:04d}-{c.camera}-{c.ccd}")]


def _targets(cube_path: Path, n: int, margin: float, seed: int = 1) -> list[dict]:
    import numpy as np

    from core.cubes.cache import open_cube

    cube = open_cube(str(cube_path))
    rng = np.random.default_rng(seed)
    xs = rng.uniform(margin, cube.nx - 1 - margin, n)
    ys = rng.uniform(margin, cube.ny - 1 - margin, n)
    ra, dec = cube.wcs.all_pix2world(xs, ys, 0)
    return [{"name": f"T{i:05d}", "ra": float(r), "dec": float(d)} for i, (r, d) in enumerate(zip(ra, dec))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    ap.add_argument("--targets", type=int, default=None, help="targets of the Dask batch (default 1000)")
    ap.add_argument("--anchor", type=int, default=None, help="targets of the plain loops (default 50)")
    ap.add_argument("--image", type=_image, default=None, help="cube ROWSxCOLS (default 256x256)")
    ap.add_argument("--frames", type=int, default=None, help="frames of the cube (default 100)")
    ap.add_argument("--cut", type=int, default=10, help="cutout side, pixels (default 10)")
    ap.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    ap.add_argument("--keep", action="store_true", help="keep the data and outputs")
    args = ap.parse_args()
    n_targets = args.targets or (40 if args.quick else 1000)
    n_anchor = args.anchor or (10 if args.quick else 50)
    image = args.image or ((64, 64) if args.quick else (256, 256))
    frames = args.frames or (5 if args.quick else 100)
    counts = [int(v) for v in args.workers.split(",")]
    size = (args.cut, args.cut)

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    from astrocut import CutoutFactory as AstrocutFactory

    from core.batch.cluster import dask_client
    from core.batch.cutouts import run_batch
    from core.tpf.cut import CutoutFactory

    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        cube = _make_cube(root, image, frames)
        catalog = OneCube(cube)
        targets = _targets(cube, n_targets, margin=args.cut / 2)
        print(f"{n_targets} targets x 1 cube, {args.cut}x{args.cut} px cutouts; CPUs: {os.cpu_count()}")
        figures: dict[str, float] = {}

        for n in counts:
            with dask_client(workers=n) as client:  # the LocalCluster run_batch would make
                address = client
                warm = _targets(cube, 4 * n, margin=args.cut / 2, seed=99)
                run_batch(warm, size=size, out_dir=root / f"warm-{n}", catalog=catalog, scheduler=address,
                          progress=False)
                out = root / f"out-{n}"
                t0 = time.perf_counter()
                report = run_batch(targets, size=size, out_dir=out, catalog=catalog, scheduler=address,
                                   progress=False)
                dt = time.perf_counter() - t0
                assert report.ok == n_targets, report.errors
                figures[f"ours, {n} worker{'s' if n > 1 else ''}"] = n_targets / dt
                print(f"ours, {n} worker(s): {n_targets} TPFs in {dt:.2f} s (tasks {report.timings['run']:.2f} s)")
                if n == counts[-1]:
                    t0 = time.perf_counter()
                    again = run_batch(targets, size=size, out_dir=out, catalog=catalog, scheduler=address,
                                      progress=False)
                    dt = time.perf_counter() - t0
                    assert again.skipped == n_targets and again.tasks == 0
                    figures["ours, rerun (all skipped)"] = n_targets / dt

        n = counts[-1]
        t0 = time.perf_counter()
        report = run_batch(targets, size=size, out_dir=root / "out-cold", catalog=catalog, workers=n,
                           progress=False)
        dt = time.perf_counter() - t0
        assert report.ok == n_targets
        figures[f"ours, cold (own cluster of {n})"] = n_targets / dt

        anchor = targets[:n_anchor]
        ours = CutoutFactory()
        ours.cube_cut(str(cube), f"{anchor[0]['ra']} {anchor[0]['dec']}", list(size), output_path=root / "w")
        t0 = time.perf_counter()
        for t in anchor:
            ours.cube_cut(str(cube), f"{t['ra']} {t['dec']}", list(size), output_path=root / "loop-ours")
        figures["ours, plain loop"] = n_anchor / (time.perf_counter() - t0)

        theirs = AstrocutFactory()
        theirs.cube_cut(str(cube), f"{anchor[0]['ra']} {anchor[0]['dec']}", list(size), output_path=str(root / "w"))
        t0 = time.perf_counter()
        for t in anchor:
            theirs.cube_cut(str(cube), f"{t['ra']} {t['dec']}", list(size), output_path=str(root / "loop-ac"))
        anchor_rate = n_anchor / (time.perf_counter() - t0)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")

    print()
    print(f"{'':32} {'targets/s':>10} {'vs astrocut loop':>17}")
    for name, rate in figures.items():
        print(f"{name:32} {rate:10.1f} {rate / anchor_rate:16.1f}x")
    print(f"{'astrocut 1.4.0, plain loop':32} {anchor_rate:10.1f} {1.0:16.1f}x")
    print("Dask runs: planning, tasks and manifest, on a started and warmed cluster; cold: start-up and "
          "worker imports included; rerun: a finished batch again. Loops: "
          f"{n_anchor} targets, one untimed call first. Shared machine: noisy figures.")


if __name__ == "__main__":
    main()
