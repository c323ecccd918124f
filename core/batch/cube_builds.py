"""Building every sector/camera/CCD cube found under a folder of FFIs, on Dask distributed.

:func:`make_cubes` finds the FFIs under ``ffi_dir`` (recursively), groups them by sector,
camera and CCD, and builds each group's cube as one Dask task with
``CubeFactory(product=...).make_cube(files, cube_file, max_memory=..., verbose=False)`` (memory
bounded by ``max_memory``; the factory writes a temporary file and renames it). Cubes are named
as MAST names them: ``tess-s0038-2-2-cube.fits`` (SPOC), ``tica-s0038-2-2-cube.fits`` (TICA).

How FFIs are recognised:

* by name first: SPOC ``tess2019...-s0038-2-2-0195-s_ffic.fits`` and TICA
  ``hlsp_tica_tess_ffi_s0038-o1-00012345-cam2-ccd2_tess_v01_img.fits``
  (:func:`core.synthetic.ffis.spoc_ffi_name`, :func:`core.synthetic.ffis.tica_ffi_name`);
* any other ``*.fits`` by its headers, as :mod:`core.building.factory` reads them: SPOC when HDU 1 is a
  2-D image (CAMERA/CCD from HDU 1, else HDU 0; SECTOR from HDU 0), TICA when HDU 0 is a 2-D image
  with CAMNUM/CCDNUM (SECTOR from HDU 0). Files that are neither (cubes, TPFs, other FITS) are
  listed in the report as ignored, with the reason.

Runs are resumable: an existing cube is kept when it is complete, that is when its size is the
size its own headers imply (primary header, image and table to their padded ends: not truncated)
and its table has one row per FFI of the group, with exactly the group's FFI file names (a cube
of fewer or other FFIs is rebuilt from all of them). Inputs are given to the factory in sorted
path order, so a cube equals, byte for byte, ``CubeFactory().make_cube(sorted(files), ...)`` on
the same day (the primary DATE card is the build date).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.batch.cluster import check_cluster_options, dask_client
from core.batch.cutouts import task_result
from core.batch.manifest import StatusCounts
from core.batch.progress import ProgressDisplay
from core.batch.targets import describe_error
from core.errors import InvalidInputError, NotFoundError
from core.product import Product

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["CubeBuild", "CubeBuildReport", "FfiGroup", "cube_name", "find_ffis", "is_complete_cube",
           "make_cubes"]

logger = logging.getLogger("core.batch.cube_builds")

#: SPOC calibrated FFI names: sector, camera, CCD
SPOC_FFI_NAME = re.compile(r"^tess\d{13}-s(\d{4})-(\d)-(\d)-\d{4}-[a-z]_ffic\.fits$", re.IGNORECASE)
#: TICA FFI names (MAST HLSP): sector, camera, CCD
TICA_FFI_NAME = re.compile(r"^hlsp_tica_tess_ffi_s(\d{4})-o\d+-\d+-cam(\d)-ccd(\d)_tess_v\d+_img\.fits$",
                           re.IGNORECASE)
_SECTOR_IN_NAME = re.compile(r"[-_]s(\d{4})[-_]")  # as core.building.factory falls back to it
#: memory a worker needs beyond the cube data (interpreter, headers, table), GB
_WORKER_OVERHEAD_GB = 1.0


@dataclass(frozen=True)
class FfiGroup:
    """The FFIs of one cube."""

    product: str
    sector: int
    camera: int
    ccd: int
    files: tuple[str, ...]  # sorted paths

    @property
    def key(self) -> tuple[str, int, int, int]:
        """(product, sector, camera, ccd)."""
        return (self.product, self.sector, self.camera, self.ccd)


def cube_name(product: str, sector: int, camera: int, ccd: int) -> str:
    """MAST's cube file name: ``tess-s0038-2-2-cube.fits`` or ``tica-s0038-2-2-cube.fits``."""
    return Product.parse(product).cube_name(sector, camera, ccd)


def _int_card(header: Any, *keys: str) -> int | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _identify(path: str) -> tuple[str, int, int, int] | str:
    """(product, sector, camera, ccd) of an FFI, from its name or else its headers; or the reason
    it is not an FFI."""
    name = os.path.basename(path)
    for product, pattern in ((Product.SPOC, SPOC_FFI_NAME), (Product.TICA, TICA_FFI_NAME)):
        m = pattern.match(name)
        if m:
            return (product, int(m.group(1)), int(m.group(2)), int(m.group(3)))
    from astropy.io import fits

    from core.quiet import quiet

    try:
        with quiet(), fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
            h0 = hdul[0].header
            if h0.get("NAXIS") == 2:
                if "CAMNUM" not in h0 and "CCDNUM" not in h0:
                    return "not an FFI (an image in HDU 0 without CAMNUM/CCDNUM, so not TICA)"
                camera, ccd = _int_card(h0, "CAMNUM"), _int_card(h0, "CCDNUM")
                product = Product.TICA
            else:
                try:
                    h1 = hdul[1].header
                except IndexError:
                    return "not an FFI (no image in HDU 0 or HDU 1)"
                if h1.get("XTENSION", "").strip() != "IMAGE" or h1.get("NAXIS") != 2:
                    return "not an FFI (HDU 1 is not a 2-D image: a cube or table file?)"
                camera, ccd = _int_card(h1, "CAMERA") or _int_card(h0, "CAMERA"), (
                    _int_card(h1, "CCD") or _int_card(h0, "CCD"))
                product = Product.SPOC
            sector = _int_card(h0, "SECTOR")
    except Exception as exc:  # noqa: BLE001 - astropy raises OSError, ValueError... on non-FITS bytes
        return f"not a readable FITS file ({type(exc).__name__}: {exc})"
    if sector is None:
        m = _SECTOR_IN_NAME.search(name)
        sector = int(m.group(1)) if m else None
    missing = [k for k, v in (("SECTOR", sector), ("camera", camera), ("CCD", ccd)) if v is None]
    if missing:
        return f"{product} image without {', '.join(missing)}"
    return (product, int(sector), int(camera), int(ccd))


def find_ffis(ffi_dir: str | os.PathLike, *, product: str = Product.SPOC, exclude: str | os.PathLike | None = None
              ) -> tuple[list[FfiGroup], list[tuple[str, str]]]:
    """Group the FFIs of ``product`` under ``ffi_dir`` (recursively) by sector, camera and CCD.

    Parameters
    ----------
    ffi_dir : path
        Folder searched for ``*.fits`` files.
    product : {SPOC, TICA}
        FFIs of the other product are ignored.
    exclude : path, optional
        A folder not searched (the cubes' output folder, when it is inside ``ffi_dir``).

    Returns
    -------
    groups : list of FfiGroup
        In (sector, camera, ccd) order, each with its files sorted by path.
    ignored : list of (path, reason)
        ``*.fits`` files that are not FFIs of ``product``.

    Raises
    ------
    NotFoundError
        ``ffi_dir`` is not a folder.
    """
    root = os.path.abspath(os.fspath(ffi_dir))
    if not os.path.isdir(root):
        raise NotFoundError(f"FFI folder {root} does not exist", field="ffi_dir")
    skip = os.path.abspath(os.fspath(exclude)) if exclude is not None else None
    groups: dict[tuple[str, int, int, int], list[str]] = {}
    ignored: list[tuple[str, str]] = []
    for directory, subdirs, files in os.walk(root):
        if skip is not None:
            subdirs[:] = [d for d in subdirs if os.path.join(directory, d) != skip]
        subdirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(".fits") or name.startswith("."):
                continue
            path = os.path.join(directory, name)
            ident = _identify(path)
            if isinstance(ident, str):
                ignored.append((path, ident))
            elif ident[0] != product:
                ignored.append((path, f"a {ident[0]} FFI ({product} cubes are being built)"))
            else:
                groups.setdefault(ident, []).append(path)
    out = [FfiGroup(*key, tuple(sorted(files))) for key, files in sorted(groups.items())]
    return out, ignored


def is_complete_cube(path: str | os.PathLike, ffi_names: list[str]) -> bool:
    """Whether the cube at ``path`` is whole and made of exactly the FFIs ``ffi_names`` (basenames).

    Whole: three HDUs, the file ending where its headers say the table's padded data ends, the
    image's time axis and the table both holding one frame per FFI; made of them: the table's
    FFI_FILE column holds the same names.
    """
    from astropy.io import fits

    from core.quiet import quiet

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with quiet(), fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
            if len(hdul) != 3:
                return False
            info = hdul.fileinfo(2)
            if size != info["datLoc"] + info["datSpan"]:
                return False
            h1, h2 = hdul[1].header, hdul[2].header
            n = len(ffi_names)
            if h1.get("NAXIS") != 4 or h1.get("NAXIS2") != n or h2.get("NAXIS2") != n:
                return False
            names = sorted(str(v).strip() for v in hdul[2].data["FFI_FILE"])
    except Exception:  # noqa: BLE001 - unreadable, truncated, no FFI_FILE column: not complete
        return False
    return names == sorted(ffi_names)


def build_cube(files: list[str], cube_file: str, max_memory: float, product: str) -> dict[str, Any]:
    """Build one cube (the Dask task of :func:`make_cubes`); failures are returned, not raised.

    Returns
    -------
    dict
        ``{"status": "ok", "bytes": int, "seconds": float}`` or ``{"status": "error", "error": str}``.
    """
    from core.building.factory import CubeFactory

    t0 = time.monotonic()
    try:
        CubeFactory(product=product).make_cube(files, cube_file, max_memory=max_memory, verbose=False)
        return {"status": "ok", "bytes": os.path.getsize(cube_file), "seconds": time.monotonic() - t0}
    except Exception as exc:  # noqa: BLE001 - reported, the other cubes go on
        return {"status": "error", "error": describe_error(exc), "seconds": time.monotonic() - t0}


@dataclass
class CubeBuild:
    """One cube of a :func:`make_cubes` run."""

    product: str
    sector: int
    camera: int
    ccd: int
    cube: str
    nffis: int
    status: str = ""  # "ok" | "skipped" | "error"
    bytes: int | None = None
    seconds: float = 0.0
    error: str = ""


@dataclass
class CubeBuildReport(StatusCounts):
    """What :func:`make_cubes` did: one :class:`CubeBuild` per cube, the ignored files (path,
    reason), the builds run as tasks (cubes not already complete), timings (seconds)."""

    builds: list[CubeBuild]
    ignored: list[tuple[str, str]] = field(default_factory=list)
    tasks: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def _items(self) -> list[Any]:
        return self.builds


def make_cubes(
    ffi_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scheduler: str | Client | None = None,
    workers: int | None = None,
    max_memory: float = 4.0,
    product: str = Product.SPOC,
    progress: bool | Callable[[int, int], Any] | None = None,
    memory_limit: str | float | None = None,
) -> CubeBuildReport:
    """Build the cube of every sector/camera/CCD whose FFIs are under ``ffi_dir``, one Dask task each.

    Parameters
    ----------
    ffi_dir : path
        Folder of FFIs (searched recursively; see the module docstring for what counts).
    out_dir : path
        Where the cubes go (``tess-s0038-2-2-cube.fits``...). Complete cubes there are kept.
    scheduler : str or distributed.Client, optional
        A running scheduler's address (or a client); default: a new LocalCluster.
    workers : int, optional
        LocalCluster worker processes, one thread each (default: one per cube to build, at most
        the CPU count).
    max_memory : float
        GB (1e9 bytes) each build may hold of cube data (``CubeFactory.make_cube``'s bound).
    product : {SPOC, TICA}
        Which FFIs to build cubes of.
    progress : bool or callable, optional
        As for :func:`core.batch.cutouts.run_batch`.
    memory_limit : str or number, optional
        Memory per LocalCluster worker; default ``max_memory`` + 1 GB.

    Returns
    -------
    CubeBuildReport

    Raises
    ------
    NotFoundError
        ``ffi_dir`` does not exist.
    InvalidInputError
        Bad ``product``, ``max_memory``, ``workers`` or ``memory_limit``.
    UnavailableError
        The scheduler cannot be reached.
    """
    t0 = time.monotonic()
    product = Product.parse(product).value
    mem = _check_max_memory(max_memory)
    limit = memory_limit if memory_limit is not None else int((mem + _WORKER_OVERHEAD_GB) * 1e9)
    workers, limit = check_cluster_options(scheduler, workers, limit)
    ProgressDisplay(0, label="cubes", progress=progress)  # checks progress before any work
    out = os.path.abspath(os.fspath(out_dir))
    groups, ignored = find_ffis(ffi_dir, product=product, exclude=out)
    for path, reason in ignored:
        logger.info("ignored %s: %s", path, reason)
    builds, todo = _plan_builds(groups, out)
    report = CubeBuildReport(builds, ignored, tasks=len(todo))
    report.timings["scan"] = time.monotonic() - t0
    logger.info("make-cubes: %d cubes under %s (%d complete already), %d files ignored; %d to build",
                len(builds), ffi_dir, report.skipped, len(ignored), len(todo))
    if todo:
        os.makedirs(out, exist_ok=True)
        n_workers = None if scheduler is not None else min(workers or os.cpu_count() or 1, len(todo))
        _build_on_cluster(todo, scheduler, n_workers, limit, mem, product, progress)
    report.timings["total"] = time.monotonic() - t0
    return report


def _check_max_memory(max_memory: Any) -> float:
    """``max_memory`` as a positive, finite number of GB."""
    try:
        mem = float(max_memory)
    except (TypeError, ValueError):
        mem = float("nan")
    if not (mem > 0 and mem != float("inf")):
        raise InvalidInputError(f"max_memory must be a positive number of GB, got {max_memory!r}",
                                field="max_memory")
    return mem


def _plan_builds(groups: list[FfiGroup], out: str) -> tuple[list[CubeBuild], list[tuple[CubeBuild, FfiGroup]]]:
    """A build per group of FFIs (its cube under ``out``), and those still to run: a complete cube
    there already is ``skipped``."""
    builds: list[CubeBuild] = []
    todo: list[tuple[CubeBuild, FfiGroup]] = []
    for g in groups:
        path = os.path.join(out, cube_name(*g.key))
        b = CubeBuild(g.product, g.sector, g.camera, g.ccd, path, len(g.files))
        builds.append(b)
        if is_complete_cube(path, [os.path.basename(f) for f in g.files]):
            b.status, b.bytes = "skipped", os.path.getsize(path)
        else:
            todo.append((b, g))
    return builds, todo


def _build_on_cluster(todo: list[tuple[CubeBuild, FfiGroup]], scheduler: str | Client | None,
                      n_workers: int | None, memory_limit: Any, max_memory: float, product: str,
                      progress: bool | Callable[[int, int], Any] | None) -> None:
    """Run the builds on Dask (``scheduler``, or a LocalCluster of ``n_workers``), showing progress;
    when interrupted, the builds not finished are marked so before the interruption propagates."""
    display = None
    try:
        with dask_client(scheduler, workers=n_workers, memory_limit=memory_limit) as client:
            display = ProgressDisplay(len(todo), label="cubes", progress=progress, log_every=1, log=logger)
            _run_builds(client, todo, max_memory, product, display)
    except BaseException:
        for b, _ in todo:
            if not b.status:
                b.status, b.error = "error", "not built: the run was interrupted"
        raise
    finally:
        if display is not None:
            display.close()


def _run_builds(client: Client, todo: list[tuple[CubeBuild, FfiGroup]], max_memory: float, product: str,
                display: ProgressDisplay) -> None:
    """Submit one build per cube and record each result as it arrives; on any exception (an
    interruption) the builds not finished are cancelled before it propagates."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]  # keys unique per run: a rerun never reuses an old run's result
    pending: dict[str, tuple[Any, CubeBuild]] = {}  # key -> (future, build)
    for b, g in todo:
        future = client.submit(build_cube, list(g.files), b.cube, max_memory, product,
                               key=f"cube-{os.path.basename(b.cube)}-{run}", pure=False)
        pending[future.key] = (future, b)
    try:
        for future in as_completed([f for f, _ in pending.values()]):
            b = pending.pop(future.key)[1]
            result = task_result(future)
            b.status = result.get("status", "error")
            b.seconds = float(result.get("seconds", 0.0))
            if b.status == "ok":
                b.bytes = int(result["bytes"])
                logger.info("built %s: %d FFIs, %.1f MB in %.1f s", b.cube, b.nffis, b.bytes / 1e6, b.seconds)
            else:
                b.error = str(result.get("error", "unknown error"))
                logger.warning("could not build %s: %s", b.cube, b.error)
            display.update(b.status)
    except BaseException:
        try:
            client.cancel([f for f, _ in pending.values()])
        except Exception:  # the client may be what failed; the first error is the one raised
            logger.debug("could not cancel the unfinished builds", exc_info=True)
        raise
