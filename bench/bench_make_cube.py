"""Benchmark: build a TESS cube with core.building.factory and with astrocut 1.4.0, same FFIs, same run.

Usage::

    python bench/bench_make_cube.py [--quick] [--frames N] [--size full|NYxNX] [--max-memory G]
                                    [--data DIR] [--out DIR] [--keep] [--skip-astrocut]

Writes N synthetic SPOC FFIs (default 100 full-size frames, about 3.5 GB; ``--quick``: 5 frames
of 256x256) into a temporary directory, or reuses the FFIs already in ``--data DIR`` (written
there if it is empty). Each build runs in its own subprocess after the inputs were read once
(warm page cache) and after ``sync`` (no writeback of the previous build pending). The child
reports its wall time, peak RSS (VmHWM) and bytes written (``/proc/self/io`` write_bytes and
wchar). The two cubes' image data are compared, then deleted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, time, warnings
sys.path.insert(0, {root!r})
which, files, out, mem = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4])
import astropy.table  # noqa: F401  (astrocut imports it at import time; keep both timings free of it)
if which == "ours":
    from core.building.factory import CubeFactory
    make = lambda: CubeFactory().make_cube(files, out, sector=38, max_memory=mem, verbose=False)
else:
    import astrocut
    warnings.simplefilter("ignore")
    make = lambda: astrocut.CubeFactory().make_cube(files, out, sector=38, max_memory=mem, verbose=False)
def io():
    d = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    return int(d["write_bytes"]), int(d["wchar"])
w0, c0 = io()
t0 = time.perf_counter()
make()
dt = time.perf_counter() - t0
w1, c1 = io()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": dt, "hwm_kb": int(hwm), "write_bytes": w1 - w0, "wchar": c1 - c0}}))
"""


def _warm(files: list[str]) -> None:
    buf = bytearray(16 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def _build(which: str, files: list[str], out: str, mem: float) -> dict:
    _warm(files)
    os.sync()
    code = CHILD.format(root=ROOT)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, which, json.dumps(files), out, str(mem)],
                          check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{which} build failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = wall
    res["size"] = os.path.getsize(out)
    return res


def _same_data(a: str, b: str) -> bool:
    from astropy.io import fits

    with fits.open(a) as ha, fits.open(b) as hb:
        la, lb = ha.fileinfo(1), hb.fileinfo(1)
        n = ha.fileinfo(2)["hdrLoc"] - la["datLoc"]
        if n != hb.fileinfo(2)["hdrLoc"] - lb["datLoc"]:
            return False
    chunk = 64 << 20
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(la["datLoc"])
        fb.seek(lb["datLoc"])
        while n > 0:
            k = min(chunk, n)
            if fa.read(k) != fb.read(k):
                return False
            n -= k
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 frames of 256x256")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", default=None, help="'full' (default) or NYxNX")
    ap.add_argument("--max-memory", type=float, default=50.0, help="GB, given to both builders")
    ap.add_argument("--data", default=None, help="directory of FFIs to reuse (written if empty)")
    ap.add_argument("--out", default=None, help="directory for the cubes (default: beside the FFIs); "
                    "e.g. /dev/shm to time the builders without the disk")
    ap.add_argument("--keep", action="store_true", help="keep the generated FFIs")
    ap.add_argument("--skip-astrocut", action="store_true")
    args = ap.parse_args()
    frames = args.frames or (5 if args.quick else 100)
    size = args.size or ("256x256" if args.quick else "full")
    shape = "full" if size == "full" else tuple(int(v) for v in size.lower().split("x"))

    data = args.data or tempfile.mkdtemp(prefix="bench-ffis-", dir=os.environ.get("BENCH_TMP"))
    os.makedirs(data, exist_ok=True)
    files = sorted(glob.glob(os.path.join(data, "*_ffic.fits")))
    if not files:
        sys.path.insert(0, ROOT)
        from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

        t = time.perf_counter()
        center = None if shape == "full" else (DEMO_RA, DEMO_DEC)
        s = write_sector(data, sector=38, camera=2, ccd=2, frames=frames, size=shape, center=center, seed=0)
        files = [str(f) for f in s.ffi_files]
        print(f"wrote {len(files)} FFIs ({shape}) to {data} in {time.perf_counter() - t:.1f} s")
    files = files[::-1]  # builders must sort by time themselves
    out_dir = tempfile.mkdtemp(prefix="bench-cubes-", dir=args.out or os.path.dirname(os.path.abspath(data)))
    try:
        results = {}
        for which in ("ours",) + (() if args.skip_astrocut else ("astrocut",)):
            out = os.path.join(out_dir, f"{which}-cube.fits")
            results[which] = _build(which, files, out, args.max_memory)
        print(f"\nmake_cube: {len(files)} FFIs, max_memory={args.max_memory:g} GB")
        print(f"{'builder':<10}{'time s':>9}{'GB/s':>8}{'peak RSS GB':>13}{'disk writes GB':>16}"
              f"{'wchar GB':>10}{'cube GB':>9}")
        for which, r in results.items():
            print(f"{which:<10}{r['seconds']:>9.2f}{r['size'] / 1e9 / r['seconds']:>8.3f}"
                  f"{r['hwm_kb'] * 1024 / 1e9:>13.2f}{r['write_bytes'] / 1e9:>16.2f}{r['wchar'] / 1e9:>10.2f}"
                  f"{r['size'] / 1e9:>9.2f}")
        if "astrocut" in results:
            o, a = results["ours"], results["astrocut"]
            print(f"ratios astrocut/ours: time x{a['seconds'] / o['seconds']:.2f}, "
                  f"peak RSS x{a['hwm_kb'] / o['hwm_kb']:.2f}, "
                  f"bytes written (wchar) x{a['wchar'] / max(o['wchar'], 1):.2f}")
            same = _same_data(os.path.join(out_dir, "ours-cube.fits"), os.path.join(out_dir, "astrocut-cube.fits"))
            print(f"image data identical: {same}")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.data and not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
