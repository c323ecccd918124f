"""The ``cutout`` command line: serve the API, index cubes, build cubes, cut cubes and images, batch
cutouts and cube builds on Dask, write demo data.

Every sub-command has ``--help``. Every command reads the service's settings (the ``CUTOUT_*``
environment: ``CUTOUT_CUBE_DIRS``, ``CUTOUT_INDEX``, ``CUTOUT_S3_*``...), its flags overriding them.
Errors print one line (``cutout: error: ...``) and exit non-zero; no traceback unless
``CUTOUT_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.product import Product

DEFAULT_DEMO_DIR = "demo-data"


def _size_arg(text: str) -> tuple[int, int] | str:
    """Parse ``full`` or ``NYxNX`` (rows x columns) for ``demo-data --size``."""
    if text == "full":
        return "full"
    try:
        ny, nx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'full' or ROWSxCOLS such as 256x256, got {text!r}") from None
    if ny < 8 or nx < 8:
        raise argparse.ArgumentTypeError("an image must be at least 8x8 pixels")
    return (ny, nx)


def _cutout_size(values: Sequence[str], units: str) -> Any:
    """``--size 5`` / ``--size 5 7`` plus ``--units`` as the engine's one size type (x first)."""
    from core.cutout_size import CutoutSize
    from core.errors import InvalidInputError

    if len(values) > 2:
        raise InvalidInputError(f"--size takes one or two numbers (x then y), got {len(values)}", field="size")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise InvalidInputError(f"--size takes numbers, got {' '.join(values)!r}", field="size") from None
    return CutoutSize.from_numbers(numbers[0], numbers[1] if len(numbers) > 1 else None, units, field="size",
                                   field_y="size")


def service_settings(**flags: Any) -> Any:
    """The service's settings (:class:`app.settings.Settings`: the ``CUTOUT_*`` environment) with
    the command's flags that were given (not None, not empty) over them: every command reads what
    ``cutout serve`` reads."""
    from app.settings import Settings

    return Settings(**{name: value for name, value in flags.items() if value is not None and value != []})


def write_demo_data(out: Path, *, frames: int = 20, size: Any = (256, 256), sectors: Sequence[int] = (38, 11),
                    verbose: bool = True) -> list[Path]:
    """Write synthetic SPOC sectors (FFIs + cube) around the demo position; returns the cube paths.

    Each sector goes to ``out/s00NN/`` (FFIs) with its cube ``out/tess-s00NN-C-D-cube.fits``, named as
    MAST names cubes so the service indexes it. Existing cubes are kept (first run only).
    """
    from importlib.util import find_spec

    # The demo WCS comes from tesswcs's data files (core/tess_wcs.py); importing tesswcs itself would
    # need its plotting stack (matplotlib, pandas), which the service image leaves out.
    if find_spec("tesswcs") is None:
        raise ModuleNotFoundError("tesswcs is not installed: the demo sectors use its archived WCS data files",
                                  name="tesswcs")

    from core.building.factory import CubeFactory
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

    out.mkdir(parents=True, exist_ok=True)
    cubes = []
    for sector in sectors:
        camera, ccd = 2, 2
        cube = out / f"tess-s{sector:04d}-{camera}-{ccd}-cube.fits"
        if not cube.exists():
            ffi_dir = out / f"s{sector:04d}"
            synth = write_sector(ffi_dir, sector=sector, camera=camera, ccd=ccd, frames=frames, size=size,
                                 center=(DEMO_RA, DEMO_DEC), seed=sector)
            CubeFactory().make_cube([str(f) for f in synth.ffi_files], cube_file=str(cube), verbose=verbose)
        cubes.append(cube)
    return cubes


def _cmd_demo_data(args: argparse.Namespace) -> int:
    sectors = args.sector or [38, 11]
    cubes = write_demo_data(Path(args.out), frames=args.frames, size=args.size, sectors=sectors,
                            verbose=not args.quiet)
    for cube in cubes:
        print(cube)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:

    from app.server import serve
    from app.settings import Settings

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.cube_dir:
        overrides["cube_dirs"] = args.cube_dir
    if args.image_root:
        overrides["image_roots"] = args.image_root
    if args.workers:
        overrides["processes"] = args.workers
    if args.index:
        overrides["index"] = args.index
    settings = Settings(**overrides)
    if args.demo or not settings.cube_dirs:
        demo = Path(args.demo_dir or os.environ.get("CUTOUT_DEMO_DIR", DEFAULT_DEMO_DIR)).resolve()
        print(f"Preparing demo data in {demo} (first run only) ...", flush=True)
        write_demo_data(demo, verbose=False)
        settings = settings.model_copy(update={
            "cube_dirs": [str(demo)] + list(settings.cube_dirs if args.cube_dir else []),
            "image_roots": list(settings.image_roots) or [str(demo)],
        })
    base = f"http://{settings.host}:{settings.port}"
    print(f"Serving on {base} with {settings.processes} process(es)  (browser preview: {base}/ , "
          f"API docs: {base}/docs)")
    print("Example: curl -o cutout.zip "
          f"'{base}/tesscut/api/v0.1/astrocut?ra=217.42893801&dec=-62.67949189&x=10&y=10&units=px&sector=38'",
          flush=True)
    # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully (default action: die
    # with -15 / 143). A Python handler turns that into a return, so a graceful stop exits 0.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    return serve(settings)


def _cmd_index(args: argparse.Namespace) -> int:
    from core.catalog.index import CatalogIndex
    from core.errors import InvalidInputError

    settings = service_settings(cube_dirs=args.locations, index=args.index)
    if not settings.cube_dirs:
        raise InvalidInputError("no cube locations: give folders or s3:// prefixes, or set CUTOUT_CUBE_DIRS "
                                "(as for cutout serve)", field="locations")
    where = settings.index_location
    index = CatalogIndex(where, s3=settings.s3_config(), work_dir=settings.work_dir / "index")
    report = index.update(settings.cube_dirs, threads=args.threads, full=args.full)
    for uri, why in report.failed:
        print(f"skipped {uri}: {why}", file=sys.stderr)
    print(f"{where}: {report.cubes} cubes ({report.read} read, {report.reused} unchanged, {report.removed} "
          f"removed, {len(report.failed)} not cubes) in {report.seconds:.2f} s; {report.gets} reads, "
          f"{report.bytes_read / 1e6:.2f} MB")
    for location, why in report.unreadable:
        print(f"cutout: error (locations): cannot read {location}: {why}; the index keeps what it knew of it",
              file=sys.stderr)
    return 1 if report.unreadable else 0


def _cmd_make_cube(args: argparse.Namespace) -> int:
    from core.building.factory import CubeFactory

    files = [str(f) for f in args.files]
    path = CubeFactory(product=args.product).make_cube(
        files, cube_file=args.output, sector=args.sector, max_memory=args.max_memory, verbose=not args.quiet,
        update=args.update)
    print(path)
    return 0


def _cmd_cube_cut(args: argparse.Namespace) -> int:
    from core.tpf.cut import CutoutFactory

    path = CutoutFactory().cube_cut(
        args.cube, f"{args.ra} {args.dec}", _cutout_size(args.size, args.units), product=args.product,
        target_pixel_file=args.output_file, output_path=args.output_dir, threads=args.threads,
        verbose=args.verbose, s3=service_settings().s3_config())
    print(path)
    return 0


def _cmd_fits_cut(args: argparse.Namespace) -> int:
    from core.images.cutouts import fits_cut

    extension: Any = args.extension
    if extension not in (None, "all"):
        extension = [int(e) for e in extension.split(",")]
    result = fits_cut(args.files, f"{args.ra} {args.dec}", _cutout_size(args.size, args.units),
                      extension=extension, single_outfile=not args.per_file, output_dir=args.output_dir,
                      verbose=args.verbose, s3=service_settings().s3_config())
    for path in [result] if isinstance(result, str) else result:
        print(path)
    return 0


def _cmd_img_cut(args: argparse.Namespace) -> int:
    from core.images.render import img_cut

    minmax_percent = args.minmax_percent
    result = img_cut(args.files, f"{args.ra} {args.dec}", _cutout_size(args.size, args.units),
                     stretch=args.stretch, minmax_percent=minmax_percent, minmax_value=args.minmax_value,
                     invert=args.invert, img_format=args.format, colorize=args.colorize,
                     output_dir=args.output_dir, verbose=args.verbose, s3=service_settings().s3_config())
    for path in [result] if isinstance(result, str) else result:
        print(path)
    return 0


def _add_position(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ra", type=float, required=True, help="right ascension, degrees")
    p.add_argument("--dec", type=float, required=True, help="declination, degrees")
    p.add_argument("--size", nargs="+", default=["25"], metavar="N",
                   help="cutout size: one value (square) or two (x then y); default 25")
    p.add_argument("--units", choices=["px", "deg", "d", "arcmin", "m", "arcsec", "s"], default="px",
                   help="units of --size (default px)")
    p.add_argument("--output-dir", default=".", help="where to write (default .)")
    p.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cutout`` command."""
    parser = argparse.ArgumentParser(prog="cutout", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP service (demo data when no cube dirs are configured)")
    p.add_argument("--host", help="bind address (default from CUTOUT_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from CUTOUT_PORT, 8000)")
    p.add_argument("--cube-dir", action="append", help="a directory or s3://bucket/prefix holding cubes")
    p.add_argument("--image-root", action="append", help="a directory or s3:// prefix images may come from")
    p.add_argument("--demo", action="store_true", help="also serve the synthetic demo sectors")
    p.add_argument("--demo-dir", help=f"where demo data live (default ./{DEFAULT_DEMO_DIR})")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.add_argument("--index", help="the catalog index: a path or s3://bucket/key (default <work_dir>/index/catalog.sqlite)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("index", help="build or update the catalog index of cube locations (incremental)",
                       description="Build or update the catalog index; exits 1 when a location cannot be read.")
    p.add_argument("locations", nargs="*",
                   help="folders and/or s3://bucket/prefix holding cubes (default: CUTOUT_CUBE_DIRS)")
    p.add_argument("--index", help="where the index goes: a path or s3://bucket/key (default: CUTOUT_INDEX, "
                                   "else <work_dir>/index/catalog.sqlite, as cutout serve)")
    p.add_argument("--threads", type=int, default=8, help="cubes read at once (default 8)")
    p.add_argument("--full", action="store_true", help="read every cube again, not only new or changed ones")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("demo-data", help="write a synthetic sector (FFIs and cube)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--frames", type=int, default=20, help="frames per sector (default 20)")
    p.add_argument("--size", type=_size_arg, default=(256, 256), help="full or ROWSxCOLS (default 256x256)")
    p.add_argument("--sector", type=int, action="append", help="sector number (repeatable; default 38 and 11)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("make-cube", help="build an image cube from a sector's FFIs")
    p.add_argument("files", nargs="+", type=Path, help="FFI files (SPOC or TICA)")
    p.add_argument("-o", "--output", default="img-cube.fits", help="cube file to write")
    p.add_argument("--product", choices=Product.names(), type=str.upper, default=Product.default())
    p.add_argument("--sector", type=int)
    p.add_argument("--max-memory", type=float, default=50, help="GB of memory for the cube data (default 50)")
    p.add_argument("--update", action="store_true", help="add the files to an existing cube")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_make_cube)

    p = sub.add_parser("cube-cut", help="cut a target pixel file out of a cube")
    p.add_argument("cube", help="cube file or s3:// URI")
    _add_position(p)
    p.add_argument("--product", choices=Product.names(), type=str.upper, default=Product.default())
    p.add_argument("--output-file", help="file name of the TPF (default: the TESScut name)")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_cmd_cube_cut)

    p = sub.add_parser("fits-cut", help="cut FITS images")
    p.add_argument("files", nargs="+", help="FITS files or s3:// URIs")
    _add_position(p)
    p.add_argument("--extension", help="an index, a comma list, or 'all'")
    p.add_argument("--per-file", action="store_true", help="one output file per input")
    p.set_defaults(func=_cmd_fits_cut)

    p = sub.add_parser("img-cut", help="cut FITS images to PNG/JPG")
    p.add_argument("files", nargs="+", help="FITS files or s3:// URIs")
    _add_position(p)
    p.add_argument("--stretch", choices=["asinh", "sinh", "sqrt", "log", "linear"], default="asinh")
    p.add_argument("--minmax-percent", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--minmax-value", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--invert", action="store_true")
    p.add_argument("--format", choices=["png", "jpg"], default="png")
    p.add_argument("--colorize", action="store_true", help="three inputs -> one RGB image")
    p.set_defaults(func=_cmd_img_cut)

    from app.cli_batch import add_commands

    add_commands(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """A warning as one line for a person (``cutout: warning: ...``), without Python's source lines."""
    print(f"cutout: warning: {message}", file=sys.stderr if file is None else file, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cutout`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("CUTOUT_DEBUG"):
        import warnings

        warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cutout: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, no traceback
        if os.environ.get("CUTOUT_DEBUG"):
            raise
        from core.errors import CutoutError

        kind = "error" if isinstance(exc, (CutoutError, OSError, ValueError)) else type(exc).__name__
        field = getattr(exc, "field", None)
        where = f" ({field})" if field else ""
        print(f"cutout: {kind}{where}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, CutoutError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
