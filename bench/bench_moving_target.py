"""Moving-target TPF bench: peak memory and time of one path-centred TPF of a real-size cube.

Usage: bench/bench_moving_target.py [--quick] [--frames 3705] [--side 100] [--ceiling-gb 8]

One real-size sparse cube (:func:`core.synthetic.archive.write_sparse_cube`: 2078 x 2136 px,
``--frames`` frames, the data a hole: reads cost no disk) and a path crossing ~170 pixels of it
during its frames. Each method runs in its own process, which reports the rise of its peak resident
memory (``VmHWM`` from ``/proc/self/status``) over what it had before making the TPF, and the time:

- anchor, astrocut's way (``astrocut.center_on_path`` over footprint TPFs, here this package's
  astrocut-compatible ``core.moving_target.center_on_path`` fed in-memory footprint TPFs from the
  cube, which is what the service did before): every footprint TPF with all its cadences, the
  windows of every cadence and the result, in memory;
- ours, ``core.tpf.moving_stream``: planned from the path and the per-frame columns, then the
  file's bytes produced a group of cadences at a time and discarded as they come (as the service
  sends them).

Both TPFs' FLUX columns are compared (the same windows, the same pixels). A process passing
``--ceiling-gb`` is killed and reported as above it.

``--quick`` (the CI smoke test): 200 frames, a 30 x 30 window.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _path(cube):
    """A path crossing ~170 pixels of the cube during its frames (astropy Table: time, position)."""
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from astropy.time import Time

    t = np.asarray(cube.time, float)
    ra0, dec0 = (float(v) for v in cube.wcs.all_pix2world(1000.0, 1000.0, 0))
    ra1, dec1 = (float(v) for v in cube.wcs.all_pix2world(1120.0, 1120.0, 0))
    times = Time(np.linspace(t[0], t[-1], 50) + 2457000.0, format="jd", scale="tdb")
    return Table({"time": times, "position": SkyCoord(np.linspace(ra0, ra1, 50), np.linspace(dec0, dec1, 50),
                                                      unit="deg")})


def _anchor(cube, path, side: int) -> tuple[bytes, int]:
    """The previous service code: footprint TPFs in memory, centred by center_on_path."""
    import copy

    from core.moving_target import center_on_path, path_to_footprints
    from core.tpf.cut import build_tpf, tpf_bytes

    wcs = copy.deepcopy(cube.wcs)
    wcs.pixel_shape = (cube.nx, cube.ny)
    per_pixel = cube.nframes * 20
    max_pixels = max(side * side, min(10_000, (96 << 20) // per_pixel))
    footprints = path_to_footprints(path["position"], [side, side], wcs, max_pixels=max_pixels)
    makers = [(lambda fp=fp: build_tpf(cube, fp["coordinates"], [fp["size"][1], fp["size"][0]]))
              for fp in footprints]
    out = center_on_path(path, [side, side], makers, memory_only=True, verbose=False)
    data = tpf_bytes(out)
    return data, len(data)


def _ours(cube, path, side: int) -> tuple[bytes, int]:
    """The streamed TPF; only the FLUX of a few rows is kept (to compare), the rest discarded."""
    from core.tpf.moving_stream import MovingTpfStream, plan_moving_tpf

    plan = plan_moving_tpf(cube, path, (side, side))
    size = 0
    keep = bytearray()
    for piece in MovingTpfStream(plan, threads=4).chunks():
        size += len(piece)
        if len(keep) < 64 << 20:
            keep += piece
    return bytes(keep), size


def _header_end(data: bytes, start: int) -> int:
    """Where the header starting at ``start`` ends (its last 2880-byte block)."""
    i = start
    while data[i:i + 8] != b"END     ":
        i += 80
    return (i // 2880 + 1) * 2880


def _flux_digest(data: bytes, rows: int) -> str:
    """A digest of the FLUX of the first ``rows`` cadences of a TPF given by its first bytes."""
    import io

    import numpy as np
    from astropy.io import fits

    table_start = _header_end(data, 0)
    data_start = _header_end(data, table_start)
    header = fits.Header.fromstring(data[table_start:data_start].decode("ascii"))
    n = min(rows, header["NAXIS2"])
    header["NAXIS2"] = n
    body = data[data_start:data_start + n * header["NAXIS1"]]
    small = data[:table_start] + header.tostring().encode("ascii") + body + bytes(-len(body) % 2880)
    with fits.open(io.BytesIO(small)) as hdul:
        return hashlib.sha256(np.ascontiguousarray(hdul[1].data["FLUX"]).tobytes()).hexdigest()


def child(method: str, cube_path: str, side: int) -> None:
    import astropy.table  # noqa: F401 - imports and the per-frame columns come before the baseline
    import scipy.interpolate  # noqa: F401

    import core.moving_target
    import core.tpf.cut
    import core.tpf.moving_stream  # noqa: F401
    from core.cubes.cache import open_cube

    cube = open_cube(cube_path)
    path = _path(cube)
    cube.frames  # noqa: B018
    start_hwm = _hwm()
    t0 = time.perf_counter()
    data, size = (_anchor if method == "anchor" else _ours)(cube, path, side)
    seconds = time.perf_counter() - t0
    peak = _hwm() - start_hwm
    digest = _flux_digest(data, 50)
    print(json.dumps({"peak": peak, "seconds": seconds, "bytes": size, "flux": digest}))


def run(method: str, cube: Path, side: int, ceiling: float) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--child", method, str(cube), str(side)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    limit = int(ceiling * 2**30)
    while proc.poll() is None:
        try:
            rss = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            rss = 0
        if rss > limit:
            proc.kill()
            proc.wait()
            return {"peak": None, "seconds": None, "bytes": None, "flux": None}
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{method} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, default=3705)
    parser.add_argument("--side", type=int, default=100)
    parser.add_argument("--ceiling-gb", type=float, default=8.0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    frames, side = (200, 30) if args.quick else (args.frames, args.side)
    from core.synthetic.archive import write_sparse_cube

    with tempfile.TemporaryDirectory() as tmp:
        cube = write_sparse_cube(Path(tmp) / "tess-s0038-2-2-cube.fits", sector=38, camera=2, ccd=2, frames=frames)
        print(f"moving-target TPF, {side}x{side} px window, a {frames}-frame real-size sparse cube")
        results = {m: run(m, cube, side, args.ceiling_gb) for m in ("anchor", "ours")}
    labels = {"anchor": "astrocut's way (footprint TPFs + center_on_path, in memory)",
              "ours": "ours (core.tpf.moving_stream, streamed)"}
    for method, r in results.items():
        if r["peak"] is None:
            print(f"  {labels[method]:<62} peak > {args.ceiling_gb:g} GB (killed)")
            continue
        print(f"  {labels[method]:<62} peak +{r['peak'] / 2**20:8.0f} MiB  {r['seconds']:7.2f} s  "
              f"TPF {r['bytes'] / 1e6:8.1f} MB")
    a, o = results["anchor"], results["ours"]
    if a["flux"] is not None:
        assert a["flux"] == o["flux"], "the two TPFs' FLUX differ"
        assert a["bytes"] == o["bytes"], "the two TPFs differ in size"
        print("  FLUX of the first 50 cadences: identical; sizes: identical")


if __name__ == "__main__":
    main()
