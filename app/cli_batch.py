"""The ``cutout batch`` and ``cutout make-cubes`` sub-commands (Dask distributed batch work).

``app.cli`` calls :func:`add_commands` with its sub-parsers. Each command sets ``func``, which
returns the exit status: 0 when every row or cube is done (ok or skipped), 1 when some are errors
(they are listed in the manifest / the log). Engine errors propagate to ``app.cli.main``, which
prints them on one line.

Examples::

    cutout batch targets.csv --size 15 --out tpfs --cube-dir /data/cubes
    cutout batch targets.csv --size 2 3 --units arcmin --sectors 38,39 --out tpfs \\
        --scheduler tcp://10.0.0.5:8786 --index /data/cubes/catalog.sqlite
    CUTOUT_CUBE_DIRS=/data/cubes cutout batch targets.csv --size 15 --out tpfs
    cutout batch targets.csv --size 30 --out tpfs --cube-dir /data/cubes \\
        --time-min 2333.25 --time-max 2334.25 --frame-bin 3
    cutout make-cubes /data/ffis --out /data/cubes --workers 2 --max-memory 8
"""

from __future__ import annotations

import argparse
from typing import Any

from core.errors import InvalidInputError
from core.product import Product

__all__ = ["add_commands"]


def _sectors_arg(text: str) -> list[int]:
    """``"1,2, 38"`` -> ``[1, 2, 38]``."""
    try:
        sectors = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sector numbers separated by commas, got {text!r}") from None
    if not sectors or any(s < 1 for s in sectors):
        raise argparse.ArgumentTypeError(f"expected sector numbers separated by commas, got {text!r}")
    return sectors


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _cmd_batch(args: argparse.Namespace) -> int:
    from app.cli import service_settings
    from core.batch.cutouts import run_batch
    from core.catalog.configured import open_catalog
    from core.errors import NoDataError

    if len(args.size) > 2:
        raise InvalidInputError(f"--size takes one or two numbers (x then y), got {len(args.size)}",
                                field="size")
    # the cubes cutout serve would host: CUTOUT_CUBE_DIRS / CUTOUT_INDEX, the flags over them
    settings = service_settings(cube_dirs=args.cube_dir, index=args.index)
    if not settings.cube_dirs and not settings.index:
        raise InvalidInputError("no cubes to cut from: pass --cube-dir DIR (or --index PATH), or set "
                                "CUTOUT_CUBE_DIRS (or CUTOUT_INDEX) as for cutout serve", field="cube_dir")
    s3 = settings.s3_config()
    catalog = open_catalog(cube_dirs=settings.cube_dirs, index=settings.index, s3=s3,
                           refresh=settings.writes_index)
    if not len(catalog):
        where = ", ".join(settings.cube_dirs) or str(settings.index)
        raise NoDataError(f"no cubes found in {where}", field="cube_dir")
    report = run_batch(args.targets, size=args.size, units=args.units, sectors=args.sectors,
                       out_dir=args.out, catalog=catalog, scheduler=args.scheduler, workers=args.workers,
                       product=args.product, memory_limit=args.memory_limit, s3=s3,
                       time_min=args.time_min, time_max=args.time_max, frame_bin=args.frame_bin)
    print(f"{report.ok} written, {report.skipped} already done, {report.errors} errors; "
          f"manifest: {report.manifest}")
    return 1 if report.errors else 0


def _cmd_make_cubes(args: argparse.Namespace) -> int:
    from core.batch.cube_builds import make_cubes

    report = make_cubes(args.ffi_dir, args.out, scheduler=args.scheduler, workers=args.workers,
                        max_memory=args.max_memory, product=args.product)
    for b in report.builds:
        detail = f" ({b.error})" if b.error else ""
        print(f"{b.status:7} {b.cube} [{b.nffis} FFIs]{detail}")
    print(f"{report.ok} built, {report.skipped} already complete, {report.errors} errors; "
          f"{len(report.ignored)} files ignored")
    return 1 if report.errors else 0


def _add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786); default: a local cluster for this run")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="local cluster worker processes, one thread each (default: the CPU count)")


def add_commands(subparsers: Any) -> None:
    """Add ``batch`` and ``make-cubes`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    from core.batch.cluster import DEFAULT_MEMORY_LIMIT

    p = subparsers.add_parser("batch", help="cut TPFs of many targets from every cube containing them (Dask)",
                              description="Cut a target pixel file for each target of a CSV (columns ra,dec; "
                                          "optional name, sector) from every hosted cube that contains it, "
                                          "on Dask. Reruns skip finished outputs; OUT/manifest.csv lists "
                                          "every (target, cube).")
    p.add_argument("targets", metavar="TARGETS.csv", help="CSV with columns ra,dec[,name][,sector] (degrees)")
    p.add_argument("--size", nargs="+", type=float, required=True, metavar="N",
                   help="cutout size: one value (square) or two (x then y)")
    p.add_argument("--units", choices=["px", "arcmin", "deg", "arcsec"], default="px",
                   help="units of --size (default px)")
    p.add_argument("--sectors", type=_sectors_arg, metavar="S1,S2", help="only these sectors (e.g. 1,2)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (TPFs and manifest.csv)")
    _add_cluster(p)
    p.add_argument("--cube-dir", action="extend", nargs="+", metavar="DIR",
                   help="folder or s3://bucket/prefix of cubes (repeatable; default: CUTOUT_CUBE_DIRS)")
    p.add_argument("--index", metavar="PATH", help="a cube index file for the catalog (default: CUTOUT_INDEX)")
    p.add_argument("--product", choices=Product.names(), type=str.upper, default=Product.default())
    p.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, metavar="SIZE",
                   help=f"memory per local worker (default {DEFAULT_MEMORY_LIMIT})")
    p.add_argument("--time-min", type=float, metavar="BTJD",
                   help="keep frames whose mid-exposure time (BTJD = BJD - 2457000, TDB) is at least this")
    p.add_argument("--time-max", type=float, metavar="BTJD", help="... and at most this (inclusive)")
    p.add_argument("--frame-bin", type=_positive_int, default=1, metavar="N",
                   help="average N frames into each cadence (a trailing partial bin is dropped; default 1)")
    p.set_defaults(func=_cmd_batch)

    p = subparsers.add_parser("make-cubes", help="build the cube of every sector/camera/CCD of a folder of FFIs",
                              description="Find the FFIs under FFI_DIR, group them by sector, camera and "
                                          "CCD, and build each cube (tess-s0038-2-2-cube.fits) as one Dask "
                                          "task; complete cubes already in --out are kept.")
    p.add_argument("ffi_dir", metavar="FFI_DIR", help="folder of FFIs (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the cubes go")
    _add_cluster(p)
    p.add_argument("--max-memory", type=float, default=4.0, metavar="GB",
                   help="GB of cube data each build may hold (default 4)")
    p.add_argument("--product", choices=Product.names(), type=str.upper, default=Product.default())
    p.set_defaults(func=_cmd_make_cubes)
